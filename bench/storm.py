#!/usr/bin/env python3
"""A rack powering on against bootplane, with an attacker on the same LAN.

Runs inside the client namespace that bench/storm.sh makes. Each simulated PXE client
(its own MAC) does what firmware + iPXE do: DHCP DISCOVER/REQUEST with a PXE vendor
class, takes its address (added to the namespace's interface, so replies reach it),
fetches the first-stage file over TFTP from that address, then GETs /boot.ipxe and its
/v1/boot/ipxe decision. Clients start at --rate per second. Meanwhile an attacker on
another address floods boot requests with made-up MACs and holds idle sockets open.
With --provision the machines are in `provision`: each must get its install answer (a
nonce bound to the address bootplane leased it), and the attacker also asks with the
rack's own MACs, which must never get one. Prints completion-time percentiles (power-on
to boot script) and how many clients finished; exits 1 when any client failed or the
attacker got an install answer (no figure counts a failure). Stdlib only.
"""
import argparse, asyncio, os, random, socket, struct, subprocess, time

MAGIC = b"\x63\x82\x53\x63"


def dhcp_packet(mac, xid, mtype, arch=0, requested=None, server=None):
    b = bytearray(236)
    b[0], b[1], b[2] = 1, 1, 6
    b[4:8] = struct.pack("!I", xid)
    b[10:12] = b"\x80\x00"  # broadcast flag: we have no address yet
    b[28:34] = mac
    opts = [(53, bytes([mtype])), (93, struct.pack("!H", arch)), (60, b"PXEClient:Arch:%05d:UNDI:002001" % arch), (55, bytes([1, 3, 6, 66, 67]))]
    if requested:
        opts.append((50, socket.inet_aton(requested)))
    if server:
        opts.append((54, socket.inet_aton(server)))
    b += MAGIC + b"".join(bytes([c, len(v)]) + v for c, v in opts) + b"\xff"
    return bytes(b)


def parse_reply(p):
    if len(p) < 240 or p[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", p[4:8])[0]
    yiaddr = socket.inet_ntoa(p[16:20])
    siaddr = socket.inet_ntoa(p[20:24])
    file = p[108:236].split(b"\0")[0].decode(errors="replace")
    opts, i = {}, 240
    while i < len(p) and p[i] != 255:
        if p[i] == 0:
            i += 1
            continue
        c, l = p[i], p[i + 1]
        opts[c] = p[i + 2:i + 2 + l]
        i += 2 + l
    if 67 in opts and not file:
        file = opts[67].split(b"\0")[0].decode(errors="replace")
    return xid, yiaddr, siaddr, file, opts.get(53, b"\0")[0], opts.get(54)


class Dhcp(asyncio.DatagramProtocol):
    """One socket on :68 for every simulated client; replies go to the waiter of their xid."""

    def __init__(self):
        self.waiters = {}

    def datagram_received(self, data, addr):
        r = parse_reply(data)
        if r and r[0] in self.waiters and not self.waiters[r[0]].done():
            self.waiters[r[0]].set_result(r)

    async def exchange(self, transport, pkt, xid, timeout):
        fut = asyncio.get_running_loop().create_future()
        self.waiters[xid] = fut
        try:
            for _ in range(4):
                transport.sendto(pkt, ("255.255.255.255", 67))
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except asyncio.TimeoutError:
                    continue
            raise TimeoutError("no DHCP answer")
        finally:
            self.waiters.pop(xid, None)


def tftp_get(server, local_ip, name):
    """RRQ with blksize 1428; returns the bytes received (blocking, run in a thread)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((local_ip, 0))
    s.settimeout(2)
    s.sendto(b"\x00\x01" + name.encode() + b"\0octet\0blksize\x001428\0", (server, 69))
    got, expect, bs = 0, 1, 512
    for _ in range(100000):
        try:
            data, peer = s.recvfrom(70000)
        except socket.timeout:
            raise TimeoutError(f"TFTP stalled at block {expect}")
        op = struct.unpack("!H", data[:2])[0]
        if op == 6:  # OACK
            parts = data[2:].split(b"\0")
            o = dict(zip(parts[0::2], parts[1::2]))
            bs = int(o.get(b"blksize", b"512"))
            s.sendto(b"\x00\x04\x00\x00", peer)
            continue
        if op == 5:
            raise RuntimeError(f"TFTP error {data[4:-1]!r}")
        blk = struct.unpack("!H", data[2:4])[0]
        if blk == expect & 0xFFFF:
            got += len(data) - 4
            expect += 1
        s.sendto(b"\x00\x04" + data[2:4], peer)
        if len(data) - 4 < bs and blk == (expect - 1) & 0xFFFF:
            s.close()
            return got
    raise RuntimeError("TFTP too long")


async def http_get(host, port, path, local_ip):
    r, w = await asyncio.open_connection(host, port, local_addr=(local_ip, 0))
    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    body = await r.read()
    w.close()
    return body


async def client(i, args, dhcp, transport, done, failures, ip_lock):
    mac = bytes([0x02, 0x5B, 0x00, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    # A mixed rack: legacy BIOS (option 93 = 0, undionly.kpxe) and x86-64 UEFI (7, ipxe.efi).
    arch = random.choice([0, 7])
    t0 = time.monotonic()
    try:
        xid = random.getrandbits(32)
        offer = await dhcp.exchange(transport, dhcp_packet(mac, xid, 1, arch), xid, 2.0)
        ack = await dhcp.exchange(transport, dhcp_packet(mac, xid, 3, arch, offer[1], socket.inet_ntoa(offer[5] or b"\0\0\0\0")), xid, 2.0)
        ip = ack[1]
        async with ip_lock:
            await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", args.dev], check=False))
        got = await asyncio.get_running_loop().run_in_executor(None, tftp_get, ack[2], ip, ack[3] or "undionly.kpxe")
        assert got > 10000, f"first stage is {got} bytes"
        entry = await http_get(args.server, args.port, "/boot.ipxe", ip)
        assert b"#!ipxe" in entry
        m = ":".join(f"{b:02x}" for b in mac)
        platform = "efi" if arch == 7 else "pcbios"
        script = await http_get(args.server, args.port, f"/v1/boot/ipxe?mac={m}&arch=x86_64&platform={platform}", ip)
        assert script.startswith(b"HTTP/1.1 200") and b"#!ipxe" in script, f"boot script: {script[:60]!r}"
        if args.provision:
            assert b"nonce=" in script, "no install answer for a provisioned machine from its own lease"
        done.append(time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001 - every failure is counted and shown
        failures.append(f"{type(e).__name__}: {e}")


async def attacker(args, stop):
    """Unknown-MAC boot requests as fast as 20 connections go, plus idle sockets."""
    idle = []
    for _ in range(args.idle):
        try:
            _, w = await asyncio.open_connection(args.server, args.port, local_addr=(args.attacker_ip, 0))
            idle.append(w)
        except OSError:
            break
    sent, answered, stolen = 0, 0, 0

    async def flood():
        nonlocal sent, answered, stolen
        while not stop.is_set():
            if args.provision and random.random() < 0.5:
                # A rack machine's MAC: before or after it powered on, from the wrong address.
                i = random.randrange(args.clients)
                m = "02:5b:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
            else:
                m = ":".join(f"{random.getrandbits(8):02x}" for _ in range(6))
            try:
                body = await http_get(args.server, args.port, f"/v1/boot/ipxe?mac={m}&arch=x86_64", args.attacker_ip)
                sent += 1
                answered += b"#!ipxe" in body
                stolen += b"nonce=" in body
            except OSError:
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(flood()) for _ in range(20)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    for w in idle:
        w.close()
    return sent, answered, stolen, len(idle)


def pct(v, p):
    return sorted(v)[min(len(v) - 1, int(len(v) * p / 100))] if v else float("nan")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0, help="power-ons per second")
    ap.add_argument("--server", default="198.18.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--dev", default="stormc")
    ap.add_argument("--attacker-ip", default="198.18.255.250")
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--no-attack", action="store_true")
    ap.add_argument("--provision", action="store_true", help="the machines are in provision: install answers expected")
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    # TFTP clients run in threads: enough of them that the simulator, not the server,
    # is never the queue.
    import concurrent.futures
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=256))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.dev.encode())
    sock.bind(("0.0.0.0", 68))
    transport, dhcp = await loop.create_datagram_endpoint(Dhcp, sock=sock)
    stop = asyncio.Event()
    att = None if args.no_attack else asyncio.create_task(attacker(args, stop))
    done, failures, ip_lock = [], [], asyncio.Lock()
    t0 = time.monotonic()
    tasks = []
    order = list(range(args.clients))
    random.shuffle(order)  # machines power on in no particular order
    for i in order:
        tasks.append(asyncio.create_task(client(i, args, dhcp, transport, done, failures, ip_lock)))
        await asyncio.sleep(1.0 / args.rate)
    await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    stop.set()
    sent, answered, stolen, idle = (await att) if att else (0, 0, 0, 0)
    print(f"clients: {len(done)}/{args.clients} completed in {wall:.1f} s (power-ons at {args.rate:g}/s)")
    print(f"power-on to boot script: p50 {pct(done, 50):.2f} s  p90 {pct(done, 90):.2f} s  p99 {pct(done, 99):.2f} s  max {max(done or [0]):.2f} s")
    what = "unknown-MAC and rack-MAC" if args.provision else "unknown-MAC"
    print(f"attacker: {sent} {what} boot requests sent, {answered} answered with a script (the rest 429), {stolen} install answers; {idle} idle sockets opened (the server keeps at most server.max_connections_per_source of them)")
    if failures:
        print(f"FAILED: {len(failures)} clients did not get their answer: " + "; ".join(sorted(set(failures))[:5]))
    if stolen:
        print(f"FAILED: the attacker got {stolen} install answers for the rack's MACs")
    if failures or stolen:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
