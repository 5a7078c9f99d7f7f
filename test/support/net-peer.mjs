// Real traffic for the capture tests, run inside a network namespace:
//   node net-peer.mjs server <address>           TCP 5001 and UDP 5002; prints "ready";
//                                                exits when its stdin closes
//   node net-peer.mjs client <address> <up> <down>
//                                                sends <up> TCP bytes, reads the <down>-byte
//                                                reply, then UDP datagrams of 100, 200 and
//                                                4,000 bytes (over a 1500 MTU: fragments)
//   node net-peer.mjs loopback 127.0.0.1 <up> <down>  both sides on one host
// The bytes come from a fixed generator, so every run sends the same streams.
import dgram from "node:dgram";
import net from "node:net";

const [role, address, up = "200000", down = "50000"] = process.argv.slice(2);
const upBytes = Number(up);
const downBytes = Number(down);

function pattern(n, seed) {
  const b = Buffer.alloc(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

async function server(host) {
  const udp = dgram.createSocket("udp4");
  await new Promise((resolve) => udp.bind(5002, host, resolve));
  const tcp = net.createServer((socket) => {
    socket.on("data", () => {});
    socket.on("end", () => socket.end(pattern(downBytes, 7)));
  });
  await new Promise((resolve) => tcp.listen(5001, host, resolve));
  return () => {
    tcp.close();
    udp.close();
  };
}

async function client(host) {
  await new Promise((resolve, reject) => {
    const socket = net.connect(5001, host, () => socket.end(pattern(upBytes, 3)));
    let got = 0;
    socket.on("data", (d) => {
      got += d.length;
    });
    socket.on("error", reject);
    socket.on("close", () =>
      got === downBytes ? resolve() : reject(new Error(`reply of ${got} bytes`)),
    );
  });
  const udp = dgram.createSocket("udp4");
  for (const n of [100, 200, 4000]) {
    await new Promise((resolve, reject) =>
      udp.send(pattern(n, n), 5002, host, (e) => (e ? reject(e) : resolve())),
    );
  }
  udp.close();
}

if (role === "server") {
  await server(address);
  console.log("ready");
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
} else if (role === "client") {
  await client(address);
  console.log("done");
} else if (role === "loopback") {
  const close = await server(address);
  await client(address);
  close();
  console.log("done");
} else {
  console.error(`unknown role '${role}'`);
  process.exit(2);
}
