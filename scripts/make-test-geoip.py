#!/usr/bin/env python3
"""Write a small MaxMind DB (format v2.0) mapping IP networks to countries.

The records have the GeoLite2-Country shape, so the Rust `maxminddb` crate can
read them as `maxminddb::geoip2::Country`. Standard library only.

Usage: make-test-geoip.py OUTPUT.mmdb [--map CIDR=CC ...] [--verify]
Spec:  https://maxmind.github.io/MaxMind-DB/
"""
import argparse
import ipaddress
import struct

# Later entries (and --map entries, appended after these) win on overlap.
NETWORKS = [
    ("203.0.113.0/24", "IN"),   # TEST-NET-3
    ("198.51.100.0/24", "SG"),  # TEST-NET-2
    ("192.0.2.0/24", "GB"),     # TEST-NET-1
    ("127.0.0.0/8", "IN"),      # loopback, so local test traffic gets a country
    ("2001:db8::/32", "SG"),    # IPv6 documentation prefix
]

# iso_code -> (English name, continent code). Unknown codes use the code as name.
COUNTRIES = {
    "IN": ("India", "AS"), "SG": ("Singapore", "AS"), "GB": ("United Kingdom", "EU"),
    "FR": ("France", "EU"), "US": ("United States", "NA"), "DE": ("Germany", "EU"),
    "JP": ("Japan", "AS"), "CN": ("China", "AS"), "AU": ("Australia", "OC"),
    "BR": ("Brazil", "SA"), "CA": ("Canada", "NA"), "ZA": ("South Africa", "AF"),
}

ALIASED = [ipaddress.ip_network("::ffff:0:0/96"), ipaddress.ip_network("2002::/16")]
BUILD_EPOCH = 1700000000  # fixed, so the output is byte-for-byte deterministic
RECORD_SIZE = 24
METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"

# Data section type numbers from the spec. Types > 7 are "extended".
T_PTR, T_STR, T_DOUBLE, T_BYTES, T_U16, T_U32, T_MAP = 1, 2, 3, 4, 5, 6, 7
T_I32, T_U64, T_U128, T_ARRAY, T_BOOL, T_FLOAT = 8, 9, 10, 11, 14, 15


class U16(int): pass  # int subclasses choose the unsigned width to emit
class U32(int): pass
class U64(int): pass


def ctrl(typ, size):
    """Control byte(s): 3 type bits + 5 size bits, then extended type, then size bytes."""
    if size < 29:
        sbits, extra = size, b""
    elif size < 285:
        sbits, extra = 29, bytes([size - 29])
    elif size < 65821:
        sbits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        sbits, extra = 31, (size - 65821).to_bytes(3, "big")
    if typ <= 7:
        return bytes([(typ << 5) | sbits]) + extra
    return bytes([sbits, typ - 7]) + extra  # extended: type bits 0, next byte = type - 7


def encode(v):
    if isinstance(v, str):
        b = v.encode("utf-8")
        return ctrl(T_STR, len(b)) + b
    if isinstance(v, dict):
        return ctrl(T_MAP, len(v)) + b"".join(encode(k) + encode(x) for k, x in v.items())
    if isinstance(v, list):
        return ctrl(T_ARRAY, len(v)) + b"".join(encode(x) for x in v)
    if isinstance(v, int):
        typ = T_U16 if isinstance(v, U16) else T_U64 if isinstance(v, U64) else T_U32
        b = v.to_bytes((v.bit_length() + 7) // 8, "big")  # minimal big-endian; 0 -> no bytes
        return ctrl(typ, len(b)) + b
    raise TypeError(f"cannot encode {v!r}")


def country_record(cc):
    name, continent = COUNTRIES.get(cc, (cc, None))
    rec = {"country": {"iso_code": cc, "names": {"en": name}}}
    if continent:  # `continent` is optional in geoip2::Country; omit when unknown
        rec["continent"] = {"code": continent}
    return rec


def to_v6(net):
    """IPv4 networks live at ::a.b.c.d/(96+len) as in GeoLite2; readers walk 96 zero bits."""
    if net.version == 4:
        return int(net.network_address), net.prefixlen + 96
    return int(net.network_address), net.prefixlen


def insert(root, addr, plen, value):
    """Point the slot for addr/plen at value (a node or ("data", cc))."""
    node = root
    for depth in range(plen - 1):
        bit = (addr >> (127 - depth)) & 1
        if not isinstance(node[bit], list):  # empty or a broader network: split it
            node[bit] = [node[bit], node[bit]]
        node = node[bit]
    node[(addr >> (128 - plen)) & 1] = value  # overrides anything more specific beneath


def build(networks):
    """Build the search tree and data section; return the full file bytes."""
    # Trie nodes are [left, right]; a slot holds None (empty), a list (node) or ("data", cc).
    root = [None, None]
    for cidr, cc in networks:
        net = ipaddress.ip_network(cidr, strict=True)
        addr, plen = to_v6(net)
        if plen == 0:
            raise SystemExit(f"{cidr}: a /0 network cannot be stored in the tree")
        if net.version == 6 and any(net.subnet_of(a) for a in ALIASED):
            raise SystemExit(f"{cidr}: inside an IPv4 alias range; map the IPv4 network instead")
        insert(root, addr, plen, ("data", cc))

    # Like GeoLite2, alias IPv4-mapped (::ffff:a.b.c.d) and 6to4 (2002:a.b.c.d::) space to
    # the IPv4 subtree, so a dual-stack socket's ::ffff:127.0.0.1 peer still finds a country.
    v4 = root  # whatever covers ::/96: a node, a broader network's data, or None
    for _ in range(96):
        v4 = v4[0] if isinstance(v4, list) else v4
    for alias in ALIASED:
        insert(root, int(alias.network_address), alias.prefixlen, v4)

    # Number nodes breadth-first so the root is node 0.
    order, index = [root], {id(root): 0}
    for node in order:
        for child in node:
            if isinstance(child, list) and id(child) not in index:
                index[id(child)] = len(order)
                order.append(child)
    node_count = len(order)

    # Each distinct country record is encoded once; records point at its offset.
    data, offsets = b"", {}
    for _, cc in networks:
        if cc not in offsets:
            offsets[cc] = len(data)
            data += encode(country_record(cc))

    def record(slot):
        if slot is None:
            return node_count  # "no data" marker
        if isinstance(slot, list):
            return index[id(slot)]
        return node_count + 16 + offsets[slot[1]]  # data pointer, per spec

    tree = bytearray()
    for node in order:
        for slot in node:
            value = record(slot)
            assert value < 1 << RECORD_SIZE, "record overflow; use a larger record size"
            tree += value.to_bytes(3, "big")  # 24-bit records: left 3 bytes, right 3 bytes

    metadata = {
        "binary_format_major_version": U16(2),
        "binary_format_minor_version": U16(0),
        "build_epoch": U64(BUILD_EPOCH),
        "database_type": "GeoLite2-Country",
        "description": {"en": "Seldesk test geolocation database"},
        "ip_version": U16(6),
        "languages": ["en"],
        "node_count": U32(node_count),
        "record_size": U16(RECORD_SIZE),
    }
    return bytes(tree) + b"\x00" * 16 + data + METADATA_MARKER + encode(metadata)


# ---- Minimal reader, used only by --verify ---------------------------------

def decode(buf, pos, base):
    """Decode one value at buf[pos]; pointers are relative to `base`. Returns (value, next_pos)."""
    c = buf[pos]; pos += 1
    typ, size = c >> 5, c & 0x1F
    if typ == T_PTR:
        ss, v = (size >> 3) & 3, size & 7
        n = ss + 1
        raw = int.from_bytes(buf[pos:pos + n], "big")
        ptr = [(v << 8) | raw, ((v << 16) | raw) + 2048,
               ((v << 24) | raw) + 526336, raw][ss]
        return decode(buf, base + ptr, base)[0], pos + n
    if typ == 0:
        typ = buf[pos] + 7; pos += 1
    if size >= 29:
        n = size - 28
        size = [29, 285, 65821][n - 1] + int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if typ == T_MAP:
        out = {}
        for _ in range(size):
            k, pos = decode(buf, pos, base)
            out[k], pos = decode(buf, pos, base)
        return out, pos
    if typ == T_ARRAY:
        out = []
        for _ in range(size):
            x, pos = decode(buf, pos, base)
            out.append(x)
        return out, pos
    if typ == T_BOOL:
        return bool(size), pos
    raw = buf[pos:pos + size]
    if typ == T_STR:
        return raw.decode("utf-8"), pos + size
    if typ in (T_U16, T_U32, T_U64, T_U128):
        return int.from_bytes(raw, "big"), pos + size
    if typ == T_I32:
        return int.from_bytes(raw, "big", signed=True), pos + size
    if typ == T_DOUBLE:
        return struct.unpack(">d", raw)[0], pos + size
    if typ == T_FLOAT:
        return struct.unpack(">f", raw)[0], pos + size
    if typ == T_BYTES:
        return bytes(raw), pos + size
    raise ValueError(f"unsupported type {typ}")


class Reader:
    def __init__(self, buf):
        self.buf = buf
        m = buf.rfind(METADATA_MARKER)
        assert m >= 0, "metadata marker not found"
        self.meta = decode(buf, m + len(METADATA_MARKER), m + len(METADATA_MARKER))[0]
        assert self.meta["record_size"] == 24
        self.nodes = self.meta["node_count"]
        self.data_base = self.nodes * 6 + 16  # tree, then the 16-byte zero separator
        assert buf[self.nodes * 6:self.data_base] == b"\x00" * 16

    def lookup(self, ip):
        # int() of IPv4 a.b.c.d equals int() of ::a.b.c.d, so walking 128 bits of it
        # is exactly "96 zero bits, then the IPv4 bits" as the real readers do.
        addr, node = int(ipaddress.ip_address(ip)), 0
        for i in range(128):
            if node >= self.nodes:
                break
            node = self.read(node, (addr >> (127 - i)) & 1)
        if node <= self.nodes:  # == node_count means "no data"
            return None
        offset = node - self.nodes - 16
        return decode(self.buf, self.data_base + offset, self.data_base)[0]

    def read(self, node, bit):
        p = node * 6 + bit * 3
        return int.from_bytes(self.buf[p:p + 3], "big")


def verify(path, networks):
    buf = open(path, "rb").read()
    r = Reader(buf)
    m = r.meta
    assert m["ip_version"] == 6 and m["database_type"] == "GeoLite2-Country", m
    assert m["binary_format_major_version"] == 2 and m["build_epoch"] == BUILD_EPOCH, m
    assert m["languages"] == ["en"] and m["description"]["en"], m
    print(f"OK metadata: node_count={m['node_count']} record_size={m['record_size']} "
          f"ip_version={m['ip_version']} size={len(buf)} bytes")
    nets = [(ipaddress.ip_network(c), cc) for c, cc in networks]

    def expected(ip):  # compare in the ::/96 layout; last matching network wins, like build()
        if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour):  # the aliases above
            ip = ip.ipv4_mapped or ip.sixtofour
        hits = [cc for n, cc in nets
                for addr, plen in [to_v6(n)] if int(ip) >> (128 - plen) == addr >> (128 - plen)]
        return hits[-1] if hits else None

    for net, _ in nets:
        ip = net.network_address + (1 if net.num_addresses > 2 else 0)
        want, got = expected(ip), r.lookup(ip)
        assert got and got["country"]["iso_code"] == want, (str(ip), want, got)
        assert got["country"]["names"]["en"] == COUNTRIES.get(want, (want,))[0]
        print(f"OK {ip} ({net}) -> {want} {got['country']['names']['en']}")
        if ip.version == 4:  # the same address seen through the IPv6 aliases
            for alias in (f"::ffff:{ip}", "2002:%02x%02x:%02x%02x::1" % tuple(ip.packed)):
                got = r.lookup(alias)
                assert got and got["country"]["iso_code"] == want, (alias, want, got)
                print(f"OK {alias} (alias) -> {want}")
    for cand in ["8.8.8.8", "1.1.1.1", "100.64.0.1", "2606:4700::1", "2a00::1", "::1",
                 "::ffff:8.8.8.8"]:
        ip = ipaddress.ip_address(cand)
        if expected(ip) is None:
            assert r.lookup(ip) is None, (cand, r.lookup(ip))
            print(f"OK {ip} -> (no record)")
    print("OK all checks passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--map", action="append", default=[], metavar="CIDR=CC",
                    help="extra network mapping, e.g. 10.0.0.0/8=FR (repeatable)")
    ap.add_argument("--verify", action="store_true", help="re-read the file and check lookups")
    args = ap.parse_args()
    networks = list(NETWORKS)
    for item in args.map:
        cidr, sep, cc = item.partition("=")
        if not sep or len(cc.strip()) != 2:
            ap.error(f"bad --map {item!r}; expected CIDR=CC")
        ipaddress.ip_network(cidr.strip(), strict=True)  # fail early on typos
        networks.append((cidr.strip(), cc.strip().upper()))
    with open(args.output, "wb") as f:
        f.write(build(networks))
    print(f"wrote {args.output}")
    if args.verify:
        verify(args.output, networks)


if __name__ == "__main__":
    main()
