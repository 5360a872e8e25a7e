#!/usr/bin/env python3
"""What ran while the slow answers of a latency run waited.

Usage: tail_attribution.py SCHED_SCRIPT LATENCY_OUT [FQDND_PID]

SCHED_SCRIPT: `perf script` of `perf sched record -k CLOCK_MONOTONIC` over
the run; LATENCY_OUT: dns_latency.py's output with SLOW_US set; FQDND_PID:
fqdnd's loop (its other processes are forked state writers). For each slow
answer, the on-CPU time of every task over its round trip, from the
scheduler's switches. An answer is put down to fqdnd's loop when the loop
ran 0.5 ms or more without a break during it; else to a state writer when
one ran 0.5 ms or more (it takes a CPU); else to the other task (not
fqdnd, the client, dnsmasq or idle) that ran longest, if 0.5 ms or more;
else to nothing seen (both CPUs idle or running the participants:
interrupts, the hypervisor). fqdnd's journal sync thread is another task,
"fqdnd-sync". Also prints the loop's slices of 0.5 ms or
more over the whole recording, and fqdnd's forks.
"""
import collections
import re
import sys

SWITCH = re.compile(r"\[(\d+)\]\s+(\d+\.\d+):\s+sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*"
                    r"==> next_comm=(.*?) next_pid=(\d+)")
FORK = re.compile(r"sched:sched_process_fork: comm=fqdnd ")
PARTICIPANTS = ("fqdnd", "python3", "dnsmasq")
LONG = 0.0005


def main():
    loop = sys.argv[3] if len(sys.argv) > 3 else ""
    slices = []  # (start, end, comm) of every task's time on a CPU
    running = {}  # cpu -> (comm, since)
    forks = 0
    with open(sys.argv[1]) as f:
        for line in f:
            m = SWITCH.search(line)
            if not m:
                forks += bool(FORK.search(line))
                continue
            cpu, t, nxt, nxt_pid = m.group(1), float(m.group(2)), m.group(5), m.group(6)
            if cpu in running:
                comm, since = running[cpu]
                slices.append((since, t, comm))
            if nxt == "fqdnd":
                nxt = "fqdnd loop" if loop in ("", nxt_pid) else "fqdnd writer"
            running[cpu] = (nxt, t)
    slow = []
    with open(sys.argv[2]) as f:
        for line in f:
            if line.startswith("slow "):
                _, sent, rtt, _name = line.split()
                slow.append((float(sent), float(rtt) / 1e6))
    slices.sort()
    causes = collections.Counter()
    names = collections.Counter()
    for sent, rtt in slow:
        end = sent + rtt
        on_cpu = collections.Counter()
        loop_long = False
        for start, stop, comm in slices:
            if start > end:
                break
            if stop < sent:
                continue
            on_cpu[comm] += min(stop, end) - max(start, sent)
            loop_long |= comm == "fqdnd loop" and stop - start >= LONG
        others = [(t, c) for c, t in on_cpu.items()
                  if not c.startswith("swapper") and c not in PARTICIPANTS + ("fqdnd loop", "fqdnd writer")]
        top = max(others, default=(0, ""))
        if loop_long:
            causes["fqdnd's loop ran 0.5 ms or more"] += 1
        elif on_cpu["fqdnd writer"] >= LONG:
            causes["a state writer ran 0.5 ms or more"] += 1
        elif top[0] >= LONG:
            causes["another task ran 0.5 ms or more"] += 1
            names[top[1]] += 1
        else:
            causes["nothing seen"] += 1
    print(f"slow answers: {len(slow)}")
    for cause, n in causes.most_common():
        print(f"  {cause}: {n}")
    if names:
        print("  the other tasks: " + ", ".join(f"{c} {n}" for c, n in names.most_common()))
    long = [stop - start for start, stop, comm in slices if comm == "fqdnd loop" and stop - start >= LONG]
    print(f"fqdnd's loop: slices of 0.5 ms or more: {len(long)}"
          + (f", the longest {max(long) * 1000:.1f} ms" if long else "") + f"; forks of fqdnd: {forks}")


if __name__ == "__main__":
    main()
