// `contrast status`: the Coordinator's state, name, generation, latest transition and recovery progress.
import { clientOf, patiently } from "../context.js";
import type { Context } from "../context.js";

/** Runs `contrast status`. */
export async function status(ctx: Context): Promise<void> {
  const client = clientOf(ctx);
  const s = await patiently(ctx, client.baseUrl, () => client.status());
  ctx.out.result({ coordinator: client.baseUrl, ...s });
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
}
