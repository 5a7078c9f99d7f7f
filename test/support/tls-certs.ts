import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Whether the openssl command (Debian's openssl package) is installed. */
export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes certificates with openssl under `root`, laid out as QEMU's
 * tls-creds-x509 `dir=` wants them (ca-cert.pem, server-cert.pem/-key.pem,
 * client-cert.pem/-key.pem).
 */
export class CertFactory {
  constructor(readonly root: string) {}

  private run(...args: string[]): void {
    execFileSync("openssl", args, { cwd: this.root, stdio: "ignore" });
  }

  /** A CA in `dir`: ca-cert.pem and ca.key. */
  makeCa(dir: string, cn: string): void {
    mkdirSync(join(this.root, dir), { recursive: true });
    this.run(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/ca.key`,
      "-out",
      `${dir}/ca-cert.pem`,
      "-subj",
      `/CN=${cn}`,
      "-days",
      "2",
    );
  }

  /** `role`-cert.pem/-key.pem in `dir`, signed by the CA in `caDir`; negative days: already expired. */
  makeCert(dir: string, caDir: string, role: string, cn: string, days = 2): void {
    mkdirSync(join(this.root, dir), { recursive: true });
    this.run(
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/${role}-key.pem`,
      "-out",
      `${dir}/${role}.csr`,
      "-subj",
      `/O=hvlab test/CN=${cn}`,
    );
    writeFileSync(
      join(this.root, dir, `${role}.ext`),
      "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    this.run(
      "x509",
      "-req",
      "-in",
      `${dir}/${role}.csr`,
      "-CA",
      `${caDir}/ca-cert.pem`,
      "-CAkey",
      `${caDir}/ca.key`,
      "-CAcreateserial",
      "-days",
      String(days),
      "-extfile",
      `${dir}/${role}.ext`,
      "-out",
      `${dir}/${role}-cert.pem`,
    );
    this.run("x509", "-in", `${caDir}/ca-cert.pem`, "-out", `${dir}/ca-cert.pem`);
  }
}
