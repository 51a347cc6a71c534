// `contrast status`: the Coordinator's state, name, generation, latest transition and recovery progress, from an attested Coordinator.
import { attest, coordinatorReference, reportAttested, skippingAttestation } from "../attest.js";
import { clientOf, patiently } from "../context.js";
import type { Context } from "../context.js";
import type { VerifiedCoordinator } from "../../../src/attestation/coordinator-verify.js";
import { CliError } from "../errors.js";
import { Workspace } from "../workspace.js";

/** Runs `contrast status`. */
export async function status(ctx: Context): Promise<void> {
  const client = clientOf(ctx);
  const skip = skippingAttestation(ctx, client.baseUrl);
  const reference = skip ? null : await coordinatorReference(ctx, await Workspace.open(ctx.workspace));
  let s = await patiently(ctx, client.baseUrl, () => client.status());
  let attested: VerifiedCoordinator | null = null;
  if (reference !== null) {
    // The status must be the attested Coordinator's: its name, and the transition its evidence binds (a write in between: ask again).
    for (let attempt = 1; ; attempt++) {
      attested = await attest(ctx, client, reference, { name: s.name });
      const bound = attested.state?.latestTransition ?? null;
      if (bound === s.latestTransition) break;
      if (attempt >= 3) {
        throw new CliError(
          "ATTESTATION_MISMATCH",
          `the Coordinator at ${client.baseUrl} is attested, but its evidence binds transition ${bound ?? "none"} while its status shows ${s.latestTransition ?? "none"}`,
          "run contrast status again",
        );
      }
      s = await patiently(ctx, client.baseUrl, () => client.status());
    }
  }
  ctx.out.result({ coordinator: client.baseUrl, ...s, attested: attested === null ? null : { platform: attested.platform, policy: attested.policyHash } });
  ctx.out.line(`coordinator        ${client.baseUrl}`);
  ctx.out.line(`name               ${s.name}`);
  ctx.out.line(`state              ${s.state}`);
  ctx.out.line(`generation         ${s.generation ?? "-"}`);
  ctx.out.line(`latest transition  ${s.latestTransition ?? "-"}`);
  if (s.recovery !== null) {
    const attempt = s.recovery.nonce === null ? "" : ` (attempt ${s.recovery.nonce})`;
    ctx.out.line(
      `recovery           ${s.recovery.received} of ${s.recovery.threshold} share${s.recovery.threshold === 1 ? "" : "s"} received${attempt}; ` +
        (s.recovery.threshold === 1 ? "run contrast recover" : "each seed-share owner runs contrast recover with their own key"),
    );
  }
  if (s.refusedHead !== undefined) ctx.out.line(`refused head       ${s.refusedHead.code}: ${s.refusedHead.message}`);
  if (attested !== null && reference !== null) reportAttested(ctx, attested, reference);
}
