// Subject alternative names: strict IP parsing, DNS names, wildcards and number-like names, and the form a certificate carries.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalIp, generalName, isValidSan } from "../../src/manifest/san.js";

describe("SANs", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["::1", "0:0:0:0:0:0:0:1"],
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

  it.each([
    ["*.com", "a wildcard over a top-level domain"],
    ["*.web", "a wildcard over a single label"],
    ["*", "a bare wildcard"],
    ["web.*.svc", "a wildcard that is not the first label"],
    ["*web.svc", "a partial wildcard"],
    ["0x7f.1", "a hexadecimal IPv4 form"],
    ["0x7f000001", "a single hexadecimal number"],
    ["0177.0.0.1", "an octal IPv4 form"],
    ["127.1", "a short IPv4 form"],
    ["2130706433", "a single decimal number"],
    ["web.123", "a name whose last label is a number"],
    ["web.0x1f", "a name whose last label is a hexadecimal number"],
    ["0.0.0.0", "the unspecified IPv4 address"],
    ["::", "the unspecified IPv6 address"],
    ["0:0:0:0:0:0:0:0", "the unspecified IPv6 address, spelt out"],
    ["::0.0.0.0", "the unspecified IPv6 address with an IPv4 tail"],
    ["::ffff:0.0.0.0", "the unspecified IPv4 address, IPv4-mapped"],
  ])("refuses %j (%s)", (san) => {
    expect(isValidSan(san)).toBe(false);
  });

  it("still reads the unspecified addresses as IP addresses (only a SAN refuses them)", () => {
    expect(canonicalIp("::")).toBe("0:0:0:0:0:0:0:0");
    expect(canonicalIp("0.0.0.0")).toBe("0.0.0.0");
  });

  it.each(["web", "web.default.svc", "*.web.svc", "*.example.com", "a-b_c.example", "1.2.3.web", "123abc", "web.x1"])("takes %s as a DNS name", (san) => {
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

  it("takes an IPv4 address only as a dotted quad, never in the other forms URL parsers read (hex, octal, short)", () => {
    fc.assert(
      fc.property(fc.ipV4Extended(), (ip) => {
        const dottedQuad = canonicalIp(ip) === ip;
        expect(isValidSan(ip)).toBe(dottedQuad && ip !== "0.0.0.0");
      }),
      { numRuns: 500 },
    );
  });

  it("takes every IPv6 address but the unspecified one", () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        expect(isValidSan(ip)).toBe(canonicalIp(ip) !== "0:0:0:0:0:0:0:0");
      }),
      { numRuns: 300 },
    );
  });

  // Labels of letters, digits and hyphens that end in a letter: names no URL parser reads as a number.
  const label = fc.stringMatching(/^[a-z]([a-z0-9-]{0,10}[a-z])?$/);
  const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));

  it("takes a wildcard over two or more labels, and refuses one over a single label", () => {
    fc.assert(
      fc.property(name, (n) => {
        expect(isValidSan(n)).toBe(true);
        expect(isValidSan(`*.${n}`)).toBe(n.includes("."));
      }),
      { numRuns: 300 },
    );
  });

  it("refuses every name whose last label is a decimal or hexadecimal number", () => {
    const number = fc.oneof(fc.nat().map(String), fc.nat().map((v) => `0x${v.toString(16)}`), fc.constant("0x"));
    fc.assert(
      fc.property(fc.array(label, { maxLength: 3 }), number, (labels, last) => {
        expect(isValidSan([...labels, last].join("."))).toBe(false);
        expect(isValidSan(["*", ...labels, last].join("."))).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
