using System.Diagnostics;
using BnDist.Core.Collectives;
using BnDist.Core.Collectives.SharedMemory;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// The shared-memory group, each rank on its own thread with its own mapping of the segment (as
/// separate processes map it): sums in rank order bit for bit, the leader's host exchange,
/// failures that end every rank with the same reason within the deadline, and no file left.
/// </summary>
public sealed class SharedMemoryGroupTests
{
    private static string SegmentPath() =>
        Path.Combine(SharedMemoryGroup.IsSupported ? SharedMemoryGroup.DefaultDirectory : Path.GetTempPath(), $"bndist-test-{Guid.NewGuid():n}");

    /// <summary>Runs <paramref name="body"/> as K ranks attached to one new segment; the exceptions by rank.</summary>
    private static Exception?[] RunRanks(int k, TimeSpan timeout, Action<SharedMemoryGroup> body, string? path = null)
    {
        path ??= SegmentPath();
        var ranks = Enumerable.Range(0, k).ToArray();
        var errors = new Exception?[k];
        var threads = Enumerable.Range(0, k).Select(r => new Thread(() =>
        {
            try
            {
                using var group = SharedMemoryGroup.Attach(path, r, ranks, timeout);
                body(group);
                group.Complete();
            }
            catch (Exception e)
            {
                errors[r] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a rank hung");
        return errors;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)] // more ranks than this machine's cores: the waits must sleep, not spin
    public void Sums_equal_the_hubs_rank_order_sum_bit_for_bit_on_every_rank(int k)
    {
        const int operations = 200;
        // Values of very different magnitudes, so that another summation order would change the bits.
        double Value(int rank, int op, int i) => Math.ScaleB(Math.Sin(rank * 7919 + op * 31 + i) , (rank * 13 + i) % 40 - 20);
        var results = new double[k][][];
        var path = SegmentPath();
        var errors = RunRanks(k, TimeSpan.FromSeconds(20), group =>
        {
            int rank = group.LocalRank;
            results[rank] = new double[operations][];
            for (int op = 0; op < operations; op++)
            {
                int length = 1 + op % 7 * 73; // lengths change from one operation to the next
                var values = new double[length];
                for (int i = 0; i < length; i++) values[i] = Value(rank, op, i);
                group.AllReduce(values, step: op / 4, op % 2 == 0 ? CollectiveKind.BatchNormStats : CollectiveKind.BatchNormGradSums, layer: op % 4);
                results[rank][op] = values;
            }
        }, path);
        Assert.All(errors, e => Assert.Null(e));
        for (int op = 0; op < operations; op++)
        {
            int length = results[0][op].Length;
            var expected = new double[length];
            for (int r = 0; r < k; r++)
                for (int i = 0; i < length; i++) expected[i] += Value(r, op, i);
            for (int r = 0; r < k; r++) Assert.Equal(expected, results[r][op]); // exact: same order, same bits
        }
        Assert.False(File.Exists(path), "the segment's file must be gone once every rank attached");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Gradient_sums_equal_the_hubs_rank_order_sum_bit_for_bit_in_chunks_from_buffers_and_segments(int k)
    {
        // Lengths below, at and across the chunk size (and one that leaves a rank an empty part).
        int[] lengths = [1, 2 * SharedMemoryGroup.ChunkFloats + 12345, 1000, SharedMemoryGroup.ChunkFloats, 2, 7];
        float Value(int rank, int op, int i) => MathF.ScaleB(MathF.Sin(rank * 7919 + op * 31 + i * 0.37f), (rank * 5 + i) % 24 - 12);
        var results = new float[k][][];
        var errors = RunRanks(k, TimeSpan.FromSeconds(30), group =>
        {
            int rank = group.LocalRank;
            results[rank] = new float[lengths.Length][];
            for (int op = 0; op < lengths.Length; op++)
            {
                var values = new float[lengths[op]];
                for (int i = 0; i < values.Length; i++) values[i] = Value(rank, op, i);
                if (op % 2 == 0)
                {
                    group.AllReduce(values, step: op);
                }
                else
                {
                    // Where gradients lie on the CPU backend: in segments (some empty, some across chunks).
                    int third = values.Length / 3;
                    group.AllReduce(new FloatSegments(values.AsMemory(0, third), Memory<float>.Empty, values.AsMemory(third, third),
                        values.AsMemory(2 * third)), step: op);
                }
                results[rank][op] = values;
                // BN statistics interleave with gradients on the same barriers.
                var stats = new double[] { rank, 1 };
                group.AllReduce(stats, op, CollectiveKind.BatchNormStats, 0);
                Assert.Equal(new double[] { k * (k - 1) / 2, k }, stats);
            }
        });
        Assert.All(errors, e => Assert.Null(e));
        for (int op = 0; op < lengths.Length; op++)
        {
            var expected = new float[lengths[op]];
            for (int i = 0; i < expected.Length; i++)
            {
                float sum = Value(0, op, i); // ((g0 + g1) + g2) …: the hub's order
                for (int r = 1; r < k; r++) sum += Value(r, op, i);
                expected[i] = sum;
            }
            for (int r = 0; r < k; r++) Assert.True(expected.AsSpan().SequenceEqual(results[r][op]), $"rank {r}, operation {op}");
        }
    }

    [Fact]
    public void Gradients_on_several_hosts_reach_every_rank_with_the_other_hosts_sum()
    {
        // The other host's sum is 100 + i; the leader's "ring" adds it to this host's, in chunks.
        int n = SharedMemoryGroup.ChunkFloats + 5;
        var errors = RunRanks(3, TimeSpan.FromSeconds(30), group =>
        {
            var values = new float[n];
            for (int i = 0; i < n; i++) values[i] = group.LocalRank + 1;
            group.AllReduce(values, 2, hierarchical: true, group.LocalRank == 0 ? new OtherHost() : null);
            for (int i = 0; i < n; i++)
                if (values[i] != 6 + 100 + i % 1000) throw new InvalidOperationException($"rank {group.LocalRank}: value {i} is {values[i]}");
        });
        Assert.All(errors, e => Assert.Null(e));
    }

    private sealed class OtherHost : IFloatAllReduce
    {
        private int _offset;

        public void AllReduce(float[] buffer, int length, long step)
        {
            for (int i = 0; i < length; i++) buffer[i] += 100 + (_offset + i) % 1000;
            _offset += length;
        }
    }

    [Fact]
    public void A_leader_that_fails_to_reach_the_other_hosts_fails_its_host_with_the_reason()
    {
        var errors = RunRanks(2, TimeSpan.FromSeconds(30), group =>
            group.AllReduce(new float[10], 5, hierarchical: true, group.LocalRank == 0 ? new BrokenRing() : null));
        Assert.IsType<IOException>(errors[0]);
        Assert.Contains("the host leader (rank 0) failed to sum the gradients of step 5 with the other hosts: the ring broke",
            Assert.IsType<CollectiveException>(errors[1]).Message);
    }

    private sealed class BrokenRing(TimeSpan after = default) : IFloatAllReduce
    {
        public void AllReduce(float[] buffer, int length, long step)
        {
            long until = Stopwatch.GetTimestamp() + (long)(after.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(10);
            throw new IOException("the ring broke");
        }
    }

    [Fact]
    public void A_rank_waiting_at_a_barrier_when_another_fails_throws_the_reason_instead_of_passing()
    {
        // Fail moves the barrier words on to wake the waiters; a rank still spinning (not yet asleep)
        // used to take that for the barrier and return with its host's sum for the global one. Here
        // rank 1 waits for its leader to bring the other hosts' sum, which fails after 0.1–0.3 ms,
        // within rank 1's spin.
        for (int attempt = 0; attempt < 20; attempt++)
        {
            var errors = RunRanks(2, TimeSpan.FromSeconds(20), group =>
                group.AllReduce(new float[10], 5, hierarchical: true, group.LocalRank == 0 ? new BrokenRing(TimeSpan.FromMilliseconds(0.1 * (attempt % 3 + 1))) : null));
            Assert.IsType<IOException>(errors[0]);
            Assert.Contains("the ring broke", Assert.IsType<CollectiveException>(errors[1]).Message);
        }
    }

    [Fact]
    public void Gradients_of_different_lengths_fail_every_rank()
    {
        var errors = RunRanks(2, TimeSpan.FromSeconds(20), group => group.AllReduce(new float[group.LocalRank == 0 ? 10 : 11], 3));
        Assert.All(errors, e => Assert.Contains("gradient values at 0 of step 3", Assert.IsType<CollectiveException>(e).Message));
    }

    [Fact]
    public void The_leaders_host_exchange_reaches_every_rank()
    {
        // Another "host" contributes 1000 + i; the leader adds it to the host's sum.
        var results = new double[3][];
        var errors = RunRanks(3, TimeSpan.FromSeconds(20), group =>
        {
            for (int op = 0; op < 50; op++)
            {
                var values = Enumerable.Range(0, 9).Select(i => (double)(group.LocalRank + 1) * (i + op)).ToArray();
                HostExchange? exchange = group.LocalRank == 0 ? sum => { for (int i = 0; i < sum.Length; i++) sum[i] += 1000 + i; } : null;
                group.AllReduce(values, op, CollectiveKind.BatchNormStats, 0, hierarchical: true, exchange);
                var expected = Enumerable.Range(0, 9).Select(i => 6.0 * (i + op) + 1000 + i).ToArray();
                Assert.Equal(expected, values);
                results[group.LocalRank] = values;
            }
        });
        Assert.All(errors, e => Assert.Null(e));
    }

    [Fact]
    public void A_mismatched_operation_fails_every_rank_naming_both()
    {
        var errors = RunRanks(3, TimeSpan.FromSeconds(20), group =>
        {
            var values = new double[5];
            group.AllReduce(values, 0, CollectiveKind.BatchNormStats, group.LocalRank == 2 ? 7 : 3);
        });
        Assert.All(errors, e =>
        {
            var failure = Assert.IsType<CollectiveException>(e);
            Assert.Contains("layer 7", failure.Message);
            Assert.Contains("layer 3", failure.Message);
        });
    }

    [Fact]
    public void A_rank_that_never_contributes_is_named_at_the_deadline()
    {
        var watch = Stopwatch.StartNew();
        var errors = RunRanks(3, TimeSpan.FromSeconds(1), group =>
        {
            if (group.LocalRank == 1)
            {
                Thread.Sleep(TimeSpan.FromSeconds(4)); // stalls (alive), then finds the run failed
                group.AllReduce(new double[3], 0, CollectiveKind.BatchNormStats, 0);
                return;
            }
            group.AllReduce(new double[3], 0, CollectiveKind.BatchNormStats, 0);
        });
        Assert.InRange(watch.Elapsed.TotalSeconds, 0.9, 10);
        Assert.All(errors, e => Assert.Contains("rank(s) 1 did not contribute to step 0 BatchNormStats layer 0 within 1 s",
            Assert.IsType<CollectiveException>(e).Message));
    }

    [Fact]
    public void A_rank_that_leaves_fails_the_others_at_once_with_its_name()
    {
        var watch = Stopwatch.StartNew();
        var path = SegmentPath();
        var ranks = new[] { 0, 1, 2 };
        var errors = new Exception?[3];
        var threads = Enumerable.Range(0, 3).Select(r => new Thread(() =>
        {
            try
            {
                using var group = SharedMemoryGroup.Attach(path, r, ranks, TimeSpan.FromSeconds(30));
                if (r == 2) return; // disposed without Complete: it left mid-run
                group.AllReduce(new double[3], 0, CollectiveKind.BatchNormStats, 0);
            }
            catch (Exception e)
            {
                errors[r] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.InRange(watch.Elapsed.TotalSeconds, 0, 10); // far below the 30 s deadline
        Assert.Null(errors[2]);
        Assert.Contains($"rank 2 (pid {Environment.ProcessId}) left the run", errors[0]!.Message);
        Assert.Contains($"rank 2 (pid {Environment.ProcessId}) left the run", errors[1]!.Message);
    }

    [SkippableFact]
    public void A_rank_whose_process_dies_is_named_long_before_the_deadline()
    {
        Skip.IfNot(SharedMemoryGroup.IsSupported && File.Exists("/bin/sleep"), "needs Linux (/proc, /dev/shm)");
        using var doomed = Process.Start("/bin/sleep", "60");
        try
        {
            var path = SegmentPath();
            var ranks = new[] { 0, 1 };
            Exception? error = null;
            var survivor = new Thread(() =>
            {
                try
                {
                    using var group = SharedMemoryGroup.Attach(path, 0, ranks, TimeSpan.FromSeconds(30));
                    group.AllReduce(new double[3], 4, CollectiveKind.BatchNormGradSums, 2);
                }
                catch (Exception e)
                {
                    error = e;
                }
            });
            survivor.Start();
            // Rank 1 is the sleep process: attached under its pid, it never contributes, and dies.
            using var stand = SharedMemoryGroup.AttachAs(path, 1, ranks, TimeSpan.FromSeconds(30), doomed.Id);
            Thread.Sleep(300);
            var watch = Stopwatch.StartNew();
            doomed.Kill();
            Assert.True(survivor.Join(TimeSpan.FromSeconds(10)), "the survivor did not notice the death");
            Assert.InRange(watch.Elapsed.TotalSeconds, 0, 5);
            Assert.Contains($"rank 1 (pid {doomed.Id}) died during step 4 BatchNormGradSums layer 2", error?.Message);
            stand.Complete();
        }
        finally
        {
            if (!doomed.HasExited) doomed.Kill();
        }
    }

    [Fact]
    public void A_rank_that_never_attaches_is_named()
    {
        var path = SegmentPath();
        var error = Assert.Throws<CollectiveException>(() => SharedMemoryGroup.Attach(path, 0, [0, 5], TimeSpan.FromMilliseconds(300)));
        Assert.Contains("rank(s) 5 did not attach", error.Message);
        File.Delete(path);
    }

    [SkippableFact]
    public void A_shared_memory_without_room_for_the_segment_is_named_at_attach_not_a_crash_later()
    {
        // A 1 MiB tmpfs, as a container's small /dev/shm: mounting needs root (CI runs as root).
        Skip.IfNot(OperatingSystem.IsLinux() && Environment.UserName == "root", "mounting a small tmpfs needs root on Linux");
        string dir = Path.Combine(Path.GetTempPath(), $"bndist-small-shm-{Guid.NewGuid():n}");
        Directory.CreateDirectory(dir);
        try
        {
            using (var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]))
            {
                mount.WaitForExit();
                Skip.If(mount.ExitCode != 0, "could not mount a tmpfs");
            }
            string path = Path.Combine(dir, "bndist-test-segment");
            var error = Assert.Throws<CollectiveException>(() => SharedMemoryGroup.Attach(path, 0, [0, 1], TimeSpan.FromSeconds(5)));
            Assert.Contains($"{dir} has no room for the run's shared-memory segment", error.Message);
            Assert.Contains("--stats-transport grpc", error.Message);
            Assert.False(File.Exists(path), "the segment file was left behind");
        }
        finally
        {
            using (var umount = Process.Start("umount", [dir])) umount.WaitForExit();
            Directory.Delete(dir, recursive: true);
        }
    }
}
