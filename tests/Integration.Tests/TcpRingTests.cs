using System.Net.Sockets;
using BnDist.Worker;

namespace BnDist.Integration.Tests;

/// <summary>The gradient ring between workers, on loopback sockets in this process.</summary>
public sealed class TcpRingTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    /// <summary>K rings on loopback, formed as workers form them (each listens, then connects to its successor).</summary>
    private static async Task<TcpRing[]> FormAsync(int k, string token = "t0ken", string runId = "run1")
    {
        var listeners = new Socket[k];
        var endpoints = new string[k];
        for (int r = 0; r < k; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        try
        {
            return await Task.WhenAll(Enumerable.Range(0, k).Select(r =>
                TcpRing.ConnectAsync(listeners[r], r, endpoints, runId, token, Deadline, CancellationToken.None)));
        }
        finally
        {
            foreach (var l in listeners) l.Dispose();
        }
    }

    /// <summary>Runs every rank's all-reduce on a thread of its own (they block on each other).</summary>
    private static void AllReduce(TcpRing[] ring, float[][] data, int length)
    {
        var threads = ring.Select((r, i) => new Thread(() => r.AllReduce(data[i], length, step: 0))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
    }

    [Theory]
    [InlineData(2, 1000)]
    [InlineData(3, 1001)]
    [InlineData(4, 37)]
    [InlineData(5, 3)]       // fewer values than ranks: some segments are empty
    [InlineData(4, 300_001)] // segments larger than a socket buffer
    public async Task Every_rank_ends_with_the_same_bits_the_left_fold_of_each_segment(int k, int n)
    {
        var ring = await FormAsync(k);
        try
        {
            var rng = new Random(k * 1000 + n);
            float[][] input = [.. Enumerable.Range(0, k).Select(_ => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 1e3f).ToArray())];
            float[][] data = [.. input.Select(a => (float[])a.Clone())];
            AllReduce(ring, data, n);

            // Segment j (values [n·j/K, n·(j+1)/K)) is ((f_j + f_{j+1}) + …) + f_{j−1}, in float32.
            var expected = new float[n];
            for (int j = 0; j < k; j++)
            {
                for (int i = (int)((long)n * j / k); i < (int)((long)n * (j + 1) / k); i++)
                {
                    float sum = input[j][i];
                    for (int step = 1; step < k; step++) sum += input[(j + step) % k][i];
                    expected[i] = sum;
                }
            }
            foreach (var d in data) Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), d.Select(BitConverter.SingleToInt32Bits));
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
        }
    }

    [Fact]
    public async Task A_connection_without_the_runs_token_is_not_taken_for_the_neighbour()
    {
        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        // An intruder that knows the protocol but not the token gets to rank 1's listener first.
        var intruder = TcpRing.ConnectAsync(TcpRing.Listen("127.0.0.1", out _), 0, endpoints, "run1", "wrong", TimeSpan.FromSeconds(2), CancellationToken.None);
        await Task.Delay(200);
        var ring = await Task.WhenAll(Enumerable.Range(0, 2).Select(r =>
            TcpRing.ConnectAsync(listeners[r], r, endpoints, "run1", "right", Deadline, CancellationToken.None)));
        try
        {
            float[][] data = [[1, 2, 3], [10, 20, 30]];
            AllReduce(ring, data, 3);
            Assert.Equal([11f, 22f, 33f], data[0]);
            Assert.Equal([11f, 22f, 33f], data[1]);
            var refused = await Assert.ThrowsAsync<ClusterException>(() => intruder);
            Assert.Contains("did not form", refused.Message);
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
            foreach (var l in listeners) l.Dispose();
        }
    }

    [Fact]
    public async Task A_neighbour_that_vanishes_mid_all_reduce_is_named_and_nobody_hangs()
    {
        var ring = await FormAsync(3);
        ring[2].Dispose(); // rank 2 dies before the operation
        var errors = new Exception?[2];
        var started = DateTime.UtcNow;
        var threads = Enumerable.Range(0, 2).Select(r => new Thread(() =>
        {
            try { ring[r].AllReduce(new float[100_000], 100_000, step: 7); }
            catch (Exception e) { errors[r] = e; }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.True(DateTime.UtcNow - started < Deadline, "the survivors waited out the deadline");
        // Rank 0 receives from rank 2, rank 1 sends to it: both fail, naming the step and their neighbours.
        foreach (var e in errors)
        {
            var c = Assert.IsType<ClusterException>(e);
            Assert.Contains("gradient ring failed in step 7", c.Message);
            Assert.Contains("rank 2", c.Message);
        }
        foreach (var r in ring) r.Dispose();
    }
}
