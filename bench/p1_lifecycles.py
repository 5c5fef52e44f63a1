#!/usr/bin/env python3
"""P1's timing loop: create + start + delete --force with two runtimes, alternating.

Each command is started with posix_spawn (vfork + exec, as containerd's Go shim starts
runc) from this one small process, so the figures are the runtimes' own and not the
cost of a shell forking itself three times per lifecycle, which is the same for both
sides and would only narrow their ratio.

    p1_lifecycles.py ROUNDS WARMUP ERRFILE SIDE_A SIDE_B

SIDE is NAME|BINARY|ROOT|BUNDLE[|ENV=VALUE...]. Prints, for each measured run,
"NAME TOTAL CREATE START DELETE" in microseconds. Exits 1 at the first command that
fails, after printing its stderr.
"""

import os
import sys
import time


def spawn_wait(argv, env, stdin, stdout, stderr):
    acts = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=acts)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def side(spec):
    name, binary, root, bundle, *extra = spec.split("|")
    env = dict(os.environ)
    for kv in extra:
        k, v = kv.split("=", 1)
        env[k] = v
    return {"name": name, "bin": binary, "root": root, "bundle": bundle, "env": env}


def lifecycle(s, n, null, err):
    cid = f"p1-{s['name']}-{os.getpid()}-{n}"
    base = [s["bin"], "--root", s["root"]]
    steps = [
        base + ["create", "--bundle", s["bundle"], cid],
        base + ["start", cid],
        base + ["delete", "--force", cid],
    ]
    times = []
    for argv in steps:
        t0 = time.perf_counter_ns()
        rc = spawn_wait(argv, s["env"], null, null, err)
        times.append((time.perf_counter_ns() - t0) // 1000)
        if rc != 0:
            os.lseek(err, 0, os.SEEK_SET)
            sys.stderr.write(os.read(err, 65536).decode(errors="replace"))
            sys.exit(f"p1: {' '.join(argv)}: exit status {rc}")
    return times


def main():
    rounds, warmup, errfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    a, b = side(sys.argv[4]), side(sys.argv[5])
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(errfile, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    for i in range(warmup + rounds):
        order = (a, b) if i % 2 == 0 else (b, a)
        for s in order:
            os.ftruncate(err, 0)
            os.lseek(err, 0, os.SEEK_SET)
            t = lifecycle(s, n, null, err)
            n += 1
            if i >= warmup:
                print(s["name"], sum(t), *t, flush=True)


if __name__ == "__main__":
    main()
