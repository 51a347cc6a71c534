// The shared run of the following tests: 200 certificate requests over several replicas while an update that removes a policy lands through one, and what they show about the 2 s bound.
import { expect } from "vitest";
import { pause } from "./process.js";

/** What one certificate request got: where it went, for which policy, when it was sent and answered, and the answer. */
export interface Outcome<R> {
  replica: R;
  policy: "web" | "db";
  sentAt: number;
  receivedAt: number;
  status: number;
  code: string | undefined;
}

/** The requests of one run and its times: the update's acknowledgement and the bound after it. */
export interface RemovedPolicyRun<R> {
  outcomes: Outcome<R>[];
  ackAt: number;
  boundAt: number;
  /** Certificates issued for db, the removed policy. */
  dbCerts: Outcome<R>[];
  count: (f: (o: Outcome<R>) => boolean) => number;
}

/**
 * Sends 60 certificate requests, then the update (`update`, which answers its HTTP status) while 80
 * more are sent until `boundMs` after its acknowledgement, then 60 after the bound: 200 in all.
 * Request `i` goes to `replicaOf(i)` for the policy `policyOf(i)`; `certify` sends it and answers
 * the status and the error code. Checks that the update was acknowledged and every request answered.
 */
export async function requestsAcrossUpdate<R>(opts: {
  boundMs: number;
  replicaOf: (i: number) => R;
  policyOf: (i: number) => "web" | "db";
  certify: (replica: R, policy: "web" | "db") => Promise<{ status: number; code: string | undefined }>;
  update: () => Promise<{ status: number; text: string }>;
}): Promise<RemovedPolicyRun<R>> {
  const outcomes: Outcome<R>[] = [];
  const request = async (i: number): Promise<void> => {
    const replica = opts.replicaOf(i);
    const policy = opts.policyOf(i);
    const sentAt = Date.now();
    const r = await opts.certify(replica, policy);
    outcomes.push({ replica, policy, sentAt, receivedAt: Date.now(), ...r });
  };
  const inFlight: Promise<void>[] = [];
  let i = 0;
  for (; i < 60; i++) {
    inFlight.push(request(i));
    await pause(10);
  }
  const update = opts.update();
  let ackAt: number | null = null;
  void update.then(() => (ackAt = Date.now()));
  for (; i < 140; i++) {
    inFlight.push(request(i));
    await pause(ackAt === null ? 10 : Math.max(0, (ackAt + opts.boundMs - Date.now()) / (140 - i)));
  }
  const ack = await update;
  expect(ack.status, ack.text).toBe(200);
  const boundAt = ackAt! + opts.boundMs;
  while (Date.now() <= boundAt) await pause(boundAt + 1 - Date.now());
  for (; i < 200; i++) {
    inFlight.push(request(i));
    await pause(5);
  }
  await Promise.all(inFlight);
  expect(outcomes).toHaveLength(200);
  const dbCerts = outcomes.filter((o) => o.policy === "db" && o.status === 200);
  return { outcomes, ackAt: ackAt!, boundAt, dbCerts, count: (f) => outcomes.filter(f).length };
}

/** The report lines about the certificates for db, and about the requests sent after the bound. */
export function tallyLines<R>(run: RemovedPolicyRun<R>, boundMs: number): { certificates: string; afterBound: string } {
  const { dbCerts, ackAt, boundAt, count } = run;
  const beforeAck = dbCerts.filter((o) => o.receivedAt <= ackAt).length;
  const withinBound = dbCerts.filter((o) => o.receivedAt > ackAt && o.sentAt <= boundAt).length;
  const afterBound = dbCerts.filter((o) => o.sentAt > boundAt).length;
  return {
    certificates: `  certificates for db: ${dbCerts.length} in all; ${beforeAck} answered by the acknowledgement, ${withinBound} after it and sent within the ${boundMs} ms bound, ${afterBound} sent after the bound`,
    afterBound: `  requests sent after the bound: ${count((o) => o.sentAt > boundAt)} (db refused POLICY_NOT_IN_MANIFEST: ${count((o) => o.sentAt > boundAt && o.policy === "db" && o.code === "POLICY_NOT_IN_MANIFEST")}, web certified: ${count((o) => o.sentAt > boundAt && o.policy === "web" && o.status === 200)})`,
  };
}

/**
 * The bound, checked: db was certified before the acknowledgement (the run exercised it) and was
 * requested from every replica in `replicas` after the bound; after the bound nothing was certified
 * for db, every db request was refused POLICY_NOT_IN_MANIFEST, and web was still certified.
 */
export function expectBoundHeld<R>(run: RemovedPolicyRun<R>, replicas: readonly R[]): void {
  const { dbCerts, ackAt, boundAt, count, outcomes } = run;
  expect(dbCerts.filter((o) => o.receivedAt <= ackAt).length).toBeGreaterThan(0);
  for (const r of replicas) expect(count((o) => o.sentAt > boundAt && o.replica === r && o.policy === "db"), `replica ${String(r)}`).toBeGreaterThan(0);
  expect(dbCerts.filter((o) => o.sentAt > boundAt)).toEqual([]);
  for (const o of outcomes.filter((o) => o.sentAt > boundAt)) {
    if (o.policy === "db") expect(o, JSON.stringify(o)).toMatchObject({ status: 403, code: "POLICY_NOT_IN_MANIFEST" });
    else expect(o, JSON.stringify(o)).toMatchObject({ status: 200 });
  }
}
