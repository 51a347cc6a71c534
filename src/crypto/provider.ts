// The WebCrypto implementation the core uses: the runtime's own by default, swappable for tests.
import { cryptoProvider } from "@peculiar/x509";

let current: Crypto = globalThis.crypto;

/** The active WebCrypto implementation. */
export function webcrypto(): Crypto {
  return current;
}

/** The active SubtleCrypto. */
export function subtle(): SubtleCrypto {
  return current.subtle;
}

/** Switches the whole core (and @peculiar/x509) to another WebCrypto implementation. */
export function useWebCrypto(impl: Crypto): void {
  current = impl;
  cryptoProvider.set(impl);
}

/** Random bytes from the active implementation. */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  current.getRandomValues(out);
  return out;
}

/** SHA-256 of bytes. */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await current.subtle.digest("SHA-256", data as BufferSource));
}
