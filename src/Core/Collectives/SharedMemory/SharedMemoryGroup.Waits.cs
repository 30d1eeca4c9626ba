using System.Diagnostics;

namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>The group's barriers and how a rank waits at them.</summary>
public sealed unsafe partial class SharedMemoryGroup
{
    /// <summary>
    /// Arrives at the group's next barrier: the last rank to come resets the counter and bumps the
    /// generation (waking sleepers); the others wait for that when <paramref name="wait"/>.
    /// </summary>
    private void Barrier(long step, CollectiveKind kind, int layer, bool wait, bool leaderOnly = false)
    {
        // Two channels, each used by one thread of every rank: BN statistics (the training thread)
        // and gradients (the bucket thread), so the two never wait at each other's barriers.
        int channel = kind == CollectiveKind.Gradients ? 1 : 0;
        var generation = (int*)(_base + (channel == 0 ? OffGeneration : OffGeneration1));
        var arrived = (int*)(_base + (channel == 0 ? OffArrived : OffArrived1));
        var sleepers = (int*)(_base + (channel == 0 ? OffSleepers : OffSleepers1));
        // Read before arriving: the generation cannot move on until this rank has arrived.
        int seen = Volatile.Read(ref *generation);
        long barrier = _barriers[channel]++;
        Volatile.Write(ref *(long*)(RankBlock(LocalRank) + (channel == 0 ? OffArrivals : OffArrivals1)), barrier + 1);
        if (Interlocked.Increment(ref *arrived) == Size)
        {
            Volatile.Write(ref *arrived, 0);
            Interlocked.Increment(ref *generation);
            if (Volatile.Read(ref *sleepers) > 0) Futex.WakeAll(generation);
        }
        else if (wait)
        {
            WaitChange(generation, seen, sleepers, barrier, step, kind, layer, leaderOnly);
        }
    }


    /// <summary>
    /// Waits until *word moves on from <paramref name="seen"/>: spin, then futex, with deadline, abort
    /// and liveness checks; <paramref name="sequence"/> is the barrier waited at (to name who has not come).
    /// </summary>
    private void WaitChange(int* word, int seen, int* sleepers, long sequence, long step, CollectiveKind kind, int layer, bool leaderOnly)
    {
        if (!SpinUntilChanged(word, seen)) SleepUntilChanged(word, seen, sleepers, sequence, step, kind, layer, leaderOnly);
        // Fail moves every word on to wake its waiters: the change may be an abort, not the barrier.
        ThrowIfAborted();
    }

    /// <summary>
    /// Spins briefly for *word to move on from <paramref name="seen"/>: on a host with a core per rank
    /// the others are running and arrive within microseconds; with more ranks than cores, yields at
    /// once so that the rank waited for gets the core. The spin outlasts a futex wake-up (tens of µs
    /// in a VM) and a gradient chunk's work, so that a rank woken late is less likely to find the
    /// other one asleep at the next barrier in turn: with 50 µs, 16 MiB of gradients took 8–10 ms in a
    /// disturbed round where 1 ms of spin took 2.5–5.6 (bench/RESULTS.md, issue 13).
    /// </summary>
    private bool SpinUntilChanged(int* word, int seen)
    {
        if (_oversubscribed)
        {
            for (int i = 0; i < 8; i++)
            {
                if (Volatile.Read(ref *word) != seen) return true;
                Thread.Yield();
            }
            return false;
        }
        long spinUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 4_000; // 250 µs
        do
        {
            for (int i = 0; i < 16; i++)
            {
                if (Volatile.Read(ref *word) != seen) return true;
                Thread.SpinWait(8);
            }
        } while (Stopwatch.GetTimestamp() < spinUntil);
        return false;
    }

    /// <summary>Sleeps on the futex until *word moves on, with the deadline, abort and liveness checks.</summary>
    private void SleepUntilChanged(int* word, int seen, int* sleepers, long sequence, long step, CollectiveKind kind, int layer, bool leaderOnly)
    {
        long start = Stopwatch.GetTimestamp(), nextLiveness = start;
        long deadline = start + (long)((leaderOnly ? Timeout + Timeout : Timeout).TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            Interlocked.Increment(ref *sleepers);
            if (Volatile.Read(ref *word) == seen) Futex.Wait(word, seen, SleepSlice);
            Interlocked.Decrement(ref *sleepers);
            ThrowIfAborted();
            if (Volatile.Read(ref *word) != seen) return;
            long now = Stopwatch.GetTimestamp();
            if (now >= nextLiveness)
            {
                nextLiveness = now + (long)(LivenessInterval.TotalSeconds * Stopwatch.Frequency);
                foreach (int r in Waited(sequence, leaderOnly, kind))
                    if (!ProcessLiveness.IsAlive(_pids[r]))
                        Throw($"rank {_ranks[r]} (pid {_pids[r]}) died during {Describe(step, kind, layer)}");
            }
            if (now >= deadline)
            {
                string who = leaderOnly
                    ? $"the host leader (rank {_ranks[0]}) did not bring back the global sum of {Describe(step, kind, layer)}"
                    : $"rank(s) {string.Join(", ", Waited(sequence, false, kind).Select(r => _ranks[r]))} did not contribute to {Describe(step, kind, layer)}";
                Throw($"{who} within {Stopwatch.GetElapsedTime(start).TotalSeconds:0.#} s (the operation timeout)");
            }
        }
    }

    /// <summary>The local ranks this wait depends on: those not yet arrived at barrier <paramref name="sequence"/> (or the leader).</summary>
    private IEnumerable<int> Waited(long sequence, bool leaderOnly, CollectiveKind kind)
    {
        if (leaderOnly) return [0];
        int offset = kind == CollectiveKind.Gradients ? OffArrivals1 : OffArrivals;
        var missing = new List<int>();
        for (int r = 0; r < Size; r++)
            if (Volatile.Read(ref *(long*)(RankBlock(r) + offset)) <= sequence) missing.Add(r);
        return missing;
    }
}
