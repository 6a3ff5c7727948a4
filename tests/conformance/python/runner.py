"""Runs tests/conformance/scenarios.txt through the Python package `dongting`.

See tests/conformance/README.md for the file format and the output.
"""

import os
import re
import sys
import time

import dongting
from dongting import _native


def parse(text):
    scenarios = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens[0] == "scenario":
            if len(tokens) != 2:
                raise ValueError(f"line {number}: scenario takes one name")
            scenarios.append((tokens[1], []))
            continue
        if not scenarios:
            raise ValueError(f"line {number}: step before the first scenario")
        if "=>" in tokens:
            p = tokens.index("=>")
            op, expect = tokens[:p], tokens[p + 1 :]
        else:
            op, expect = tokens, []
        scenarios[-1][1].append((number, op, expect))
    return scenarios


REPEAT = re.compile(r"\{(.)\*(\d+)\}")


def expand(token, prefix):
    if token == "-":
        return ""
    return REPEAT.sub(lambda m: m.group(1) * int(m.group(2)), token.replace("$P", prefix))


STATES = {
    dongting.NodeKind.ABSENT: "absent",
    dongting.NodeKind.VALUE: "value",
    dongting.NodeKind.DIR: "dir",
    dongting.NodeKind.LOCK: "lock",
}


class Failure(Exception):
    pass


def shown(values):
    return " ".join(v if len(v) <= 40 else f"{v[:20]}...({len(v)} bytes)" for v in values)


def check(want, got):
    if list(want) != list(got):
        raise Failure(f"expected [{shown(want)}], got [{shown(got)}]")


def node_text(n):
    if n is None:
        return "-"
    if n.kind == dongting.NodeKind.DIR:
        return "<dir>"
    if n.kind == dongting.NodeKind.VALUE:
        return n.value.decode("utf-8", "replace")
    return "<lock>"


class Runner:
    def __init__(self, servers, group, lang):
        self.group = group
        self.lang = lang
        self.servers = servers  # `$S` of new_client
        # Lock handles by (client, key), made on a lock step's first use.
        self.locks = {}
        # Watches by (client, key), made by watch steps.
        self.watches = {}
        self.clients = {
            "a": dongting.KvClient(servers, group=group, timeout=10.0),
            "b": dongting.KvClient(servers, group=group, timeout=10.0),
            "u": dongting.KvClient("127.0.0.1:1", group=group, timeout=0.5),
        }

    def close(self):
        for w in self.watches.values():
            w.close()
        for c in self.clients.values():
            c.close()

    def new_client(self, op, prefix):
        if len(op) != 3:
            raise Failure("new_client takes ADDRESSES and TIMEOUT_MS")
        addrs = expand(op[1], prefix).replace("$S", self.servers)
        dongting.KvClient(addrs, group=self.group, timeout=int(op[2]) / 1000).close()

    def call(self, op, prefix):
        name = op[0]
        if name == "new_client":
            return self.new_client(op, prefix)
        if len(op) < 2 or op[1] not in self.clients:
            raise Failure(f"unknown client in {' '.join(op)}")
        c = self.clients[op[1]]
        args = [expand(t, prefix) for t in op[2:]]

        def want(n):
            if len(args) != n:
                raise Failure(f"{name} takes {n} arguments, got {len(args)}")

        if name == "put":
            want(2)
            return c.put(args[0], args[1].encode())
        if name == "get":
            want(1)
            return c.get(args[0])
        if name == "remove":
            want(1)
            return c.remove(args[0])
        if name == "mkdir":
            want(1)
            return c.mkdir(args[0])
        if name == "list":
            want(1)
            return c.list(args[0])
        if name == "list_page":
            want(3)
            return c.list_page(args[0], start_after=args[1], limit=int(args[2]))
        if name == "list_pages":
            want(2)
            nodes, after = [], ""
            while True:
                page = c.list_page(args[0], start_after=after, limit=int(args[1]))
                nodes += page.nodes
                if not page.more:
                    return nodes
                after = page.next_after
        if name == "batch_put":
            if len(args) % 2:
                raise Failure("batch_put takes key/value pairs")
            return c.batch_put([(args[i], args[i + 1].encode()) for i in range(0, len(args), 2)])
        if name == "batch_get":
            return c.batch_get(args)
        if name == "batch_remove":
            return c.batch_remove(args)
        if name == "cas":
            want(3)
            return c.compare_and_set(args[0], args[1].encode(), args[2].encode())
        if name == "put_temp":
            want(3)
            return c.put_temp(args[0], args[1].encode(), int(args[2]) / 1000)
        if name == "make_temp_dir":
            want(2)
            return c.make_temp_dir(args[0], int(args[1]) / 1000)
        if name == "update_ttl":
            want(2)
            return c.update_ttl(args[0], int(args[1]) / 1000)
        if name in ("try_lock", "unlock", "update_lease"):
            want({"try_lock": 3, "unlock": 1, "update_lease": 2}[name])
            lock = self.locks.get((op[1], args[0]))
            if lock is None:
                lock = self.locks[(op[1], args[0])] = c.lock(args[0])
            if name == "try_lock":
                return lock.try_lock(lease=int(args[1]) / 1000, wait=int(args[2]) / 1000)
            if name == "unlock":
                return lock.unlock()
            return lock.update_lease(int(args[1]) / 1000)
        if name == "watch":
            want(1)
            if (op[1], args[0]) in self.watches:
                raise Failure(f"client {op[1]} already watches {args[0]}")
            self.watches[(op[1], args[0])] = c.watch(args[0])
            return None
        if name in ("next_event", "unwatch"):
            want(2 if name == "next_event" else 1)
            w = self.watches.get((op[1], args[0]))
            if w is None:
                raise Failure(f"client {op[1]} does not watch {args[0]}")
            if name == "unwatch":
                return w.close()
            ev = w.next(timeout=int(args[1]) / 1000)
            if ev is None:
                return ["none"]
            if ev.compacted:
                return ["compacted"]
            got = ["event", ev.key.decode("utf-8", "replace"), STATES[ev.kind]]
            if ev.kind == dongting.NodeKind.VALUE:
                got.append(ev.value.decode("utf-8", "replace"))
            return got
        raise Failure(f"unknown step {name!r}")

    def step(self, op, expect, prefix):
        if op[0] == "sleep":
            time.sleep(int(op[1]) / 1000)
            return
        if not expect:
            raise Failure("missing expectation")
        kind = expect[0]
        try:
            reply = self.call(op, prefix)
        except dongting.DongtingError as e:
            if kind != "error":
                raise Failure(f"expected {kind}, got error {e.name} ({e.message})")
            names = expect[1].split("|")
            if e.name not in names:
                raise Failure(f"expected error {expect[1]}, got {e.name} ({e.message})")
            return
        if kind == "error":
            raise Failure(f"expected error {expect[1]}, got success")
        if kind == "ok":
            return
        if kind in ("locked", "not_locked"):
            check([kind], ["locked" if reply else "not_locked"])
        elif kind == "lock":
            check(["<lock>"], [node_text(reply)])
        elif kind in ("event", "none"):
            check([expand(t, prefix) for t in expect], reply)
        elif kind in ("value", "absent", "dir"):
            want = {"value": lambda: expand(expect[1], prefix), "absent": lambda: "-", "dir": lambda: "<dir>"}[kind]()
            check([want], [node_text(reply)])
        elif kind == "children":
            check([expand(t, prefix) for t in expect[1:]], [n.key.decode().rsplit(".", 1)[-1] for n in reply])
        elif kind == "page":
            got = ["more" if reply.more else "end"] + [n.key.decode().rsplit(".", 1)[-1] for n in reply.nodes]
            check([expand(t, prefix) for t in expect[1:]], got)
        elif kind == "values":
            check(["-" if t == "-" else expand(t, prefix) for t in expect[1:]], [node_text(n) for n in reply])
        elif kind == "codes":
            check(expect[1:], [_native.code_name(c) for c in reply.codes])
        else:
            raise Failure(f"unknown expectation {kind!r}")

    def scenario(self, name, steps):
        prefix = f"conf.{self.lang}.{name}"
        for d in ("conf", f"conf.{self.lang}", prefix):
            self.clients["a"].mkdir(d)
        for number, op, expect in steps:
            try:
                self.step(op, expect, prefix)
            except Failure as e:
                raise Failure(f"line {number}: {e}") from None


def main():
    try:
        servers = os.environ["DT_SERVERS"]
        group = int(os.environ["DT_GROUP"])
        path = os.environ["DT_SCENARIOS"]
    except (KeyError, ValueError) as e:
        print(f"conformance: environment: {e}", file=sys.stderr)
        return 2
    lang = os.environ.get("DT_LANG", "python")
    with open(path, encoding="utf-8") as f:
        scenarios = parse(f.read())
    runner = Runner(servers, group, lang)
    passed = failed = 0
    try:
        for name, steps in scenarios:
            try:
                runner.scenario(name, steps)
                passed += 1
                print(f"PASS {name}", flush=True)
            except (Failure, dongting.DongtingError) as e:
                failed += 1
                print(f"FAIL {name}: {e}", flush=True)
    finally:
        runner.close()
    print(f"{lang}: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
