// Subject alternative names: strict IP parsing, DNS names, and the form a certificate carries.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalIp, generalName, isValidSan } from "../../src/manifest/san.js";

describe("SANs", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["::1", "0:0:0:0:0:0:0:1"],
    ["::", "0:0:0:0:0:0:0:0"],
    ["fe80::1:2", "fe80:0:0:0:0:0:1:2"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["::ffff:1.2.3.4", "0:0:0:0:0:ffff:102:304"],
    ["::1.2.3.4", "0:0:0:0:0:0:102:304"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
    ["ABCD::", "abcd:0:0:0:0:0:0:0"],
  ])("reads %s as the IP address %s", (san, canonical) => {
    expect(canonicalIp(san)).toBe(canonical);
    expect(isValidSan(san)).toBe(true);
    expect(generalName(san)).toEqual({ type: "ip", value: canonical });
  });

  it.each([":", "1:2:3", "a:b", "1.2.3.4:5", "fffff::1", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", ":::1", "1.2.3", "256.1.1.1", "01.2.3.4", "::1.2.3.4.5", "::ffff:1.2.3.256", "-web", "web-", "a..b", "", "web app"])(
    "refuses %j",
    (san) => {
      expect(isValidSan(san)).toBe(false);
    },
  );

  it.each(["web", "web.default.svc", "*.web.svc", "a-b_c.example"])("takes %s as a DNS name", (san) => {
    expect(isValidSan(san)).toBe(true);
    expect(generalName(san)).toEqual({ type: "dns", value: san });
  });

  it("round-trips every IPv6 address through its canonical form", () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const canonical = canonicalIp(ip);
        expect(canonical).not.toBeNull();
        expect(canonicalIp(canonical!)).toBe(canonical);
      }),
      { numRuns: 300 },
    );
  });

  it("reads every IPv4 address", () => {
    fc.assert(fc.property(fc.ipV4(), (ip) => canonicalIp(ip) === ip), { numRuns: 200 });
  });
});
