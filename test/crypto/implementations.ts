// The WebCrypto implementations every crypto suite runs on: the runtime's own and @peculiar/webcrypto.
import { Crypto as PeculiarCrypto } from "@peculiar/webcrypto";
import { afterAll, beforeAll } from "vitest";
import { useWebCrypto } from "../../src/crypto/provider.js";

/** Name and instance of each implementation, for describe.each. */
export const implementations: [string, Crypto][] = [
  ["runtime WebCrypto", globalThis.crypto],
  ["@peculiar/webcrypto", new PeculiarCrypto() as unknown as Crypto],
];

/** Switches the core to `impl` for the enclosing describe block, and back afterwards. */
export function usingImplementation(impl: Crypto): void {
  beforeAll(() => useWebCrypto(impl));
  afterAll(() => useWebCrypto(globalThis.crypto));
}
