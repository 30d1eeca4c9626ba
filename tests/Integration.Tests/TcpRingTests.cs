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
    public async Task A_silent_connection_ahead_of_the_neighbour_does_not_hold_up_the_ring()
    {
        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        // Connected to both listeners before the ranks, and never a byte: handshakes one at a
        // time would wait on them until the deadline (10 s).
        using var silent0 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var silent1 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await silent0.ConnectAsync((System.Net.IPEndPoint)listeners[0].LocalEndPoint!);
        await silent1.ConnectAsync((System.Net.IPEndPoint)listeners[1].LocalEndPoint!);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ring = await Task.WhenAll(Enumerable.Range(0, 2).Select(r =>
            TcpRing.ConnectAsync(listeners[r], r, endpoints, "run1", "t0ken", Deadline, CancellationToken.None)));
        try
        {
            Assert.True(clock.Elapsed < Deadline / 2, $"the ring took {clock.Elapsed.TotalSeconds:F1} s to form behind silent connections");
            float[][] data = [[1, 2], [10, 20]];
            AllReduce(ring, data, 2);
            Assert.Equal([11f, 22f], data[1]);
            // Once the neighbour has passed, the silent connections are closed.
            Assert.True(await ClosedWithinAsync(silent0, TimeSpan.FromSeconds(5)) && await ClosedWithinAsync(silent1, TimeSpan.FromSeconds(5)),
                "a silent connection was left open");
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
            foreach (var l in listeners) l.Dispose();
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
        // Rank 0 receives from rank 2, rank 1 sends to it: both fail, naming the step and the rank that left
        // (rank 1 may see rank 0 give up first; it still names rank 2, whose connection it finds closed).
        for (int r = 0; r < 2; r++)
        {
            var c = Assert.IsType<ClusterException>(errors[r]);
            Assert.StartsWith($"rank {r}: the gradient ring failed in step 7: ", c.Message);
            Assert.Contains("rank 2 closed its ring connection", c.Message);
            Assert.True(ring[r].LostNeighbour);
        }
        foreach (var r in ring) r.Dispose();
    }

    // ---- item 15: every ring message carries (run, step, operation, segment, length), checked before use ----

    /// <summary>Every rank's all-reduce on a thread of its own, with its own step and length; the exceptions by rank.</summary>
    private static (Exception?[] Errors, TimeSpan Elapsed) AllReduceEach(TcpRing[] ring, Func<int, (long Step, int Length)> call)
    {
        var errors = new Exception?[ring.Length];
        var started = DateTime.UtcNow;
        var threads = ring.Select((r, i) => new Thread(() =>
        {
            var (step, length) = call(i);
            try { r.AllReduce(new float[length], length, step); }
            catch (Exception e) { errors[i] = e; }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return (errors, DateTime.UtcNow - started);
    }

    [Fact]
    public async Task A_rank_in_another_step_fails_the_all_reduce_at_once_on_both_sides_naming_both_ranks_and_both_steps()
    {
        var ring = await FormAsync(2);
        try
        {
            // Rank 1 has fallen a step ahead: nobody may use a sum mixing step 3 with step 4.
            var (errors, elapsed) = AllReduceEach(ring, r => (r == 0 ? 3 : 4, 100_000));
            Assert.True(elapsed < Deadline / 4, $"took {elapsed.TotalSeconds:0.0} s");
            for (int r = 0; r < 2; r++)
            {
                var c = Assert.IsType<ClusterException>(errors[r]);
                Assert.DoesNotContain('\n', c.Message);
                Assert.StartsWith($"rank {r}: the gradient ring failed in step {(r == 0 ? 3 : 4)}: rank {1 - r} sent [", c.Message);
                Assert.Contains($"where rank {r} expected [", c.Message);
                Assert.Contains("step 3,", c.Message);
                Assert.Contains("step 4,", c.Message);
                Assert.False(ring[r].LostNeighbour); // the ranks disagreed; nobody left
            }
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
        }
    }

    [Fact]
    public async Task A_rank_with_another_gradient_length_fails_the_all_reduce_at_once_naming_both_lengths()
    {
        var ring = await FormAsync(3);
        try
        {
            var (errors, elapsed) = AllReduceEach(ring, r => (5, r == 2 ? 1002 : 999));
            Assert.True(elapsed < Deadline / 4, $"took {elapsed.TotalSeconds:0.0} s");
            Assert.All(errors, e => Assert.IsType<ClusterException>(e));
            // Rank 0 receives from rank 2 first: it sees the length rank 2 sent and the one it expected.
            Assert.Matches(@"^rank 0: the gradient ring failed in step 5: rank 2 sent \[.*of 1002 values.*\] where rank 0 expected \[.*of 999 values", errors[0]!.Message);
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
        }
    }

    /// <summary>A ring header begins with "BDRS"; the run's hash and the operation's sequence number lie at these offsets in it.</summary>
    private const int HeaderRunHashAt = 8, HeaderSequenceAt = 24;

    [Theory]
    [InlineData(HeaderRunHashAt, "run ")]
    [InlineData(HeaderSequenceAt, "operation #")]
    public async Task A_header_for_another_run_or_operation_fails_the_all_reduce_before_the_payload_is_used(int field, string named)
    {
        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        // Rank 0's connection to rank 1 passes a relay that flips one byte of the first ring header.
        await using var relay = new Relay(endpoints[1], tamperHeaderAt: field);
        string[] viaRelay = [endpoints[0], relay.Endpoint];
        var ring = await Task.WhenAll(Enumerable.Range(0, 2).Select(r =>
            TcpRing.ConnectAsync(listeners[r], r, r == 0 ? viaRelay : endpoints, "run1", "t0ken", Deadline, CancellationToken.None)));
        try
        {
            var data = new float[][] { [1, 2, 3, 4], [10, 20, 30, 40] };
            var errors = new Exception?[2];
            var started = DateTime.UtcNow;
            var threads = Enumerable.Range(0, 2).Select(r => new Thread(() =>
            {
                try { ring[r].AllReduce(data[r], 4, step: 0); }
                catch (Exception e) { errors[r] = e; }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.True(DateTime.UtcNow - started < Deadline / 4, "the ranks waited for the deadline");
            var c = Assert.IsType<ClusterException>(errors[1]);
            Assert.StartsWith("rank 1: the gradient ring failed in step 0: rank 0 sent [", c.Message);
            Assert.Contains(named, c.Message);
            Assert.Contains("where rank 1 expected [", c.Message);
            // Rank 1 never added rank 0's segment 0 into its own.
            Assert.Equal(10f, data[1][0]);
            Assert.Equal(20f, data[1][1]);
            Assert.IsType<ClusterException>(errors[0]);
        }
        finally
        {
            foreach (var r in ring) r.Dispose();
            foreach (var l in listeners) l.Dispose();
        }
    }

    // ---- item 16: the handshake is a challenge–response; a recorded one cannot be replayed ----

    /// <summary>A genuine two-rank ring whose connection 0 → 1 passes a relay; the bytes each side sent in the handshake.</summary>
    private static async Task<(byte[] FromConnector, byte[] FromAcceptor)> RecordHandshakeAsync()
    {
        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        await using var relay = new Relay(endpoints[1]);
        string[] viaRelay = [endpoints[0], relay.Endpoint];
        var ring = await Task.WhenAll(Enumerable.Range(0, 2).Select(r =>
            TcpRing.ConnectAsync(listeners[r], r, r == 0 ? viaRelay : endpoints, "run1", "t0ken", Deadline, CancellationToken.None)));
        foreach (var r in ring) r.Dispose();
        foreach (var l in listeners) l.Dispose();
        return (relay.FromClient(), relay.FromTarget());
    }

    [Fact]
    public async Task A_recorded_handshake_of_the_connecting_rank_replayed_on_a_new_connection_is_refused()
    {
        var (hello, _) = await RecordHandshakeAsync();
        Assert.NotEmpty(hello);

        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        try
        {
            var rank1 = TcpRing.ConnectAsync(listeners[1], 1, endpoints, "run1", "t0ken", Deadline, CancellationToken.None);
            // The attacker reaches rank 1 first and replays what rank 0 sent last time.
            using var attacker = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await attacker.ConnectAsync(((System.Net.IPEndPoint)listeners[1].LocalEndPoint!));
            await attacker.SendAsync(hello);
            Assert.True(await ClosedWithinAsync(attacker, TimeSpan.FromSeconds(3)), "rank 1 kept the replayed connection open: it took it for rank 0");

            var rank0 = TcpRing.ConnectAsync(listeners[0], 0, endpoints, "run1", "t0ken", Deadline, CancellationToken.None);
            var ring = await Task.WhenAll(rank0, rank1);
            try
            {
                float[][] data = [[1, 2, 3], [10, 20, 30]];
                AllReduce(ring, data, 3);
                Assert.Equal([11f, 22f, 33f], data[0]);
                Assert.Equal([11f, 22f, 33f], data[1]);
            }
            finally
            {
                foreach (var r in ring) r.Dispose();
            }
        }
        finally
        {
            foreach (var l in listeners) l.Dispose();
        }
    }

    [Fact]
    public async Task A_recorded_handshake_of_the_accepting_rank_replayed_to_a_connecting_rank_is_refused()
    {
        var (_, answer) = await RecordHandshakeAsync();
        Assert.NotEmpty(answer);

        // An impostor at "rank 1's" endpoint answers whatever it is sent with what rank 1 answered last time.
        using var impostor = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        impostor.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        impostor.Listen(4);
        var impostorServes = Task.Run(async () =>
        {
            using var s = await impostor.AcceptAsync();
            await s.SendAsync(answer);
            await ClosedWithinAsync(s, Deadline);
        });
        var listeners = new Socket[2];
        var endpoints = new string[2];
        for (int r = 0; r < 2; r++) listeners[r] = TcpRing.Listen("127.0.0.1", out endpoints[r]);
        try
        {
            string[] toImpostor = [endpoints[0], $"127.0.0.1:{((System.Net.IPEndPoint)impostor.LocalEndPoint!).Port}"];
            var started = DateTime.UtcNow;
            var rank0 = TcpRing.ConnectAsync(listeners[0], 0, toImpostor, "run1", "t0ken", Deadline, CancellationToken.None);
            // The genuine rank 1 connects to rank 0, so rank 0's only doubt is its successor.
            var rank1 = TcpRing.ConnectAsync(listeners[1], 1, endpoints, "run1", "t0ken", TimeSpan.FromSeconds(3), CancellationToken.None);
            var refused = await Assert.ThrowsAsync<ClusterException>(() => rank0);
            Assert.True(DateTime.UtcNow - started < Deadline / 2, "rank 0 waited for its deadline");
            Assert.Contains("rank 1", refused.Message);
            Assert.Contains("token", refused.Message);
            await Assert.ThrowsAsync<ClusterException>(() => rank1); // its own successor (rank 0) never took it
        }
        finally
        {
            foreach (var l in listeners) l.Dispose();
        }
    }

    /// <summary>True when the peer closes (or resets) the connection within <paramref name="limit"/>; whatever it sent before is read and dropped.</summary>
    private static async Task<bool> ClosedWithinAsync(Socket socket, TimeSpan limit)
    {
        using var cancel = new CancellationTokenSource(limit);
        var buffer = new byte[256];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token) > 0) { }
            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// A man in the middle on loopback: accepts one connection, connects it to <c>target</c> and
    /// relays both ways, recording what each side sent; optionally flips the byte at one offset
    /// of the first ring header (found by its magic) that the client sends.
    /// </summary>
    private sealed class Relay : IAsyncDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly MemoryStream _fromClient = new(), _fromTarget = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _running;

        private static readonly byte[] HeaderMagic = "BDRS"u8.ToArray();

        public Relay(string target, int tamperHeaderAt = -1)
        {
            _listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            _listener.Listen(4);
            Endpoint = $"127.0.0.1:{((System.Net.IPEndPoint)_listener.LocalEndPoint!).Port}";
            _running = Task.Run(async () =>
            {
                using var client = await _listener.AcceptAsync(_stop.Token);
                using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                int colon = target.LastIndexOf(':');
                await server.ConnectAsync(target[..colon], int.Parse(target[(colon + 1)..]), _stop.Token);
                await Task.WhenAny(Pump(client, server, _fromClient, tamperHeaderAt), Pump(server, client, _fromTarget, -1));
            });
        }

        public string Endpoint { get; }

        public byte[] FromClient() { lock (_fromClient) return _fromClient.ToArray(); }

        public byte[] FromTarget() { lock (_fromTarget) return _fromTarget.ToArray(); }

        private async Task Pump(Socket from, Socket to, MemoryStream record, int tamperHeaderAt)
        {
            var buffer = new byte[64 * 1024];
            long at = 0, tamperAt = -1;
            try
            {
                while (true)
                {
                    int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                    if (n == 0) break;
                    lock (record)
                    {
                        record.Write(buffer, 0, n);
                        if (tamperHeaderAt >= 0 && tamperAt < 0 && record.ToArray().AsSpan().IndexOf(HeaderMagic) is int magic and >= 0)
                            tamperAt = magic + tamperHeaderAt;
                    }
                    if (tamperAt >= at && tamperAt < at + n) buffer[tamperAt - at] ^= 0xFF;
                    at += n;
                    for (int sent = 0; sent < n;) sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, _stop.Token);
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException) { }
            try { to.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            try { await _running; } catch (Exception e) when (e is SocketException or OperationCanceledException) { }
            _listener.Dispose();
            _stop.Dispose();
        }
    }
}
