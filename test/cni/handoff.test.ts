// The CNI hand-off's framing (src/cni/handoff.ts): a request round-trips, every prefix of it is
// "need more", malformed ones are refused naming why, and answers decode as the shim reads them.
import { describe, expect, it } from "vitest";
import {
  decodeAnswer,
  decodeRequest,
  encodeDeclined,
  encodeDone,
  encodeRequest,
  HandoffFrameError,
  MAX_REQUEST_BYTES,
} from "../../src/cni/handoff.js";

const req = {
  plugin: "ocelot-cni" as const,
  env: { CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME=wéb;X=a=b", EMPTY: "" },
  stdin: '{"cniVersion":"1.0.0","name":"k8s-pod-network"}',
};

describe("CNI hand-off framing", () => {
  it("a request round-trips; each shorter prefix needs more", () => {
    const buf = encodeRequest(req);
    expect(decodeRequest(buf)).toEqual(req);
    for (let n = 0; n < buf.length; n++) expect(decodeRequest(buf.subarray(0, n))).toBeUndefined();
  });

  it("refuses another magic, version or plugin, trailing bytes and oversized requests", () => {
    const buf = encodeRequest(req);
    const bad = (b: Buffer, why: RegExp) => {
      expect(() => decodeRequest(b)).toThrow(HandoffFrameError);
      expect(() => decodeRequest(b)).toThrow(why);
    };
    bad(Buffer.concat([Buffer.from("XCNI"), buf.subarray(4)]), /bad magic/);
    const v2 = Buffer.from(buf);
    v2.writeUInt32BE(2, 4);
    bad(v2, /version 2/);
    bad(encodeRequest({ ...req, plugin: "bridge" as never }), /"bridge" is not one of ours/);
    bad(Buffer.concat([buf, Buffer.from([0])]), /1 bytes after the request/);
    bad(Buffer.alloc(MAX_REQUEST_BYTES + 1), /larger than/);
  });

  it("answers: done with exit code and stdout, or declined", () => {
    expect(decodeAnswer(encodeDone(0, '{"ips":[]}\n'))).toEqual({
      declined: false,
      exitCode: 0,
      stdout: '{"ips":[]}\n',
    });
    expect(decodeAnswer(encodeDone(1, ""))).toEqual({ declined: false, exitCode: 1, stdout: "" });
    expect(decodeAnswer(encodeDeclined())).toEqual({ declined: true });
    expect(() => decodeAnswer(encodeDone(0, "x").subarray(0, 12))).toThrow(/malformed/);
  });
});
