using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using BnDist.Core.Collectives;
using BnDist.Protos;

namespace BnDist.Worker;

/// <summary>
/// The gradient data plane: a ring of TCP connections between the workers (rank r connects to
/// r + 1 and accepts r − 1) and the ring all-reduce over it, as NCCL and gloo do it: the buffer
/// is cut into K segments; K − 1 reduce-scatter steps pass partial sums around the ring, then
/// K − 1 all-gather steps pass the finished segments. Each worker sends and receives
/// 2·(K − 1)/K of the buffer, whatever K, and the coordinator carries none of it.
/// <para>
/// The sums: segment j is the left fold ((f_j + f_{j+1}) + …) + f_{j−1} of the ranks' values,
/// vectorized (<see cref="FloatSums.AddFirst"/>) — deterministic, and the all-gather copies the
/// finished bits, so every rank holds the same result. (Segment 0 is in rank order; the others
/// start at their own rank, so the hub's rank-order sums and the ring's differ in the last bits.)
/// </para>
/// <para>
/// Each segment travels behind a <see cref="HeaderBytes"/>-byte header: sender rank, a hash of
/// the run id, step, the ring operation's sequence number, exchange, segment index, total and
/// segment length. The receiver reads the header first and compares it with the one it expects
/// before it receives the payload, so a rank out of step (or of another run, or with another
/// gradient length) fails the operation at once, before any sum is used. The header goes out as
/// a separate small send ahead of the payload (no copy of the payload, no round trip).
/// </para>
/// <para>
/// Each connection begins with a mutual challenge–response handshake keyed by the run token:
/// the accepting rank sends its rank and a fresh random nonce; the connecting rank answers with
/// its rank, its own nonce and HMAC-SHA256(token, "bndist-ring/v2/connect/run/from/to" ‖ both
/// nonces); the acceptor checks it and proves the token in turn with the "accept" label. A
/// recorded handshake is useless on another connection (the other side's nonce differs), and
/// anything that fails a check is closed unanswered. Every send and receive has the deadline; a
/// neighbour that vanishes or stalls ends the call with a <see cref="ClusterException"/> naming it.
/// </para>
/// </summary>
public sealed class TcpRing : IFloatAllReduce, IDisposable
{
    private const uint HandshakeMagic = 0x32524442; // "BDR2"
    private const uint SegmentMagic = 0x53524442;   // "BDRS"
    private const int NonceBytes = 32, ProofBytes = 32;
    private const int ChallengeBytes = 4 + 4 + NonceBytes;              // acceptor → connector
    private const int HelloBytes = 4 + 4 + NonceBytes + ProofBytes;     // connector → acceptor

    /// <summary>The bytes ahead of each segment's payload.</summary>
    public const int HeaderBytes = 48;

    private readonly Socket _next, _prev;
    private readonly TimeSpan _timeout;
    private readonly ulong _runHash;
    private readonly byte[] _sendHeader = new byte[HeaderBytes], _receivedHeader = new byte[HeaderBytes], _expectedHeader = new byte[HeaderBytes];
    private CancellationTokenSource _sendDeadline = new();
    private float[] _incoming = [];
    private long _sequence;

    // The global rank of each ring position (the hosts' leaders of a hierarchical run); null: the positions are the ranks.
    private IReadOnlyList<int>? _ranks;

    private string Name(int position) => Label(_ranks, position);

    private static string Label(IReadOnlyList<int>? ranks, int position) => $"rank {(ranks is null ? position : ranks[position])}";

    private TcpRing(int rank, int world, Socket next, Socket prev, TimeSpan timeout, string runId)
    {
        (Rank, WorldSize, _next, _prev, _timeout) = (rank, world, next, prev, timeout);
        _runHash = RunHash(runId);
        foreach (var s in new[] { next, prev })
        {
            s.NoDelay = true;
            s.ReceiveTimeout = s.SendTimeout = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
            s.ReceiveBufferSize = s.SendBufferSize = 4 << 20;
        }
    }

    public int Rank { get; }

    public int WorldSize { get; }

    /// <summary>
    /// After a failed <see cref="AllReduce"/>: true when a neighbour closed, reset or stopped
    /// answering on its connection (it may have left the run, which the coordinator may know
    /// better); false when the ring itself worked but the ranks disagreed (a header mismatch).
    /// </summary>
    public bool LostNeighbour { get; private set; }

    private int Next => (Rank + 1) % WorldSize;

    private int Prev => (Rank + WorldSize - 1) % WorldSize;

    /// <summary>
    /// A listening socket for the ring connection of rank − 1, on an ephemeral port, and the
    /// endpoint to advertise: <paramref name="host"/>:port. A loopback host binds loopback only.
    /// </summary>
    public static Socket Listen(string host, out string endpoint)
    {
        bool loopback = host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(loopback ? IPAddress.Loopback : IPAddress.Any, 0));
            listener.Listen(8);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        endpoint = $"{host}:{((IPEndPoint)listener.LocalEndPoint!).Port}";
        return listener;
    }

    /// <summary>Forms this rank's part of the ring: connects to rank + 1, accepts rank − 1 on <paramref name="listener"/>.</summary>
    public static async Task<TcpRing> ConnectAsync(Socket listener, int rank, IReadOnlyList<string> endpoints, string runId, string? token,
        TimeSpan timeout, CancellationToken cancellation, IReadOnlyList<int>? ranks = null)
    {
        string Name(int position) => Label(ranks, position);
        int world = endpoints.Count;
        int next = (rank + 1) % world, prev = (rank + world - 1) % world;
        byte[] key = Encoding.UTF8.GetBytes(token ?? "");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(timeout);
        // The first side to fail ends the other at once: no waiting out the deadline for a lost cause.
        async Task<Socket> OrCancelBoth(Task<Socket> side)
        {
            try
            {
                return await side;
            }
            catch
            {
                deadline.Cancel();
                throw;
            }
        }
        var accept = OrCancelBoth(AcceptAsync(listener, rank, prev, key, runId, deadline.Token));
        var connect = OrCancelBoth(ConnectAsync(endpoints[next], rank, next, key, runId, deadline.Token));
        try
        {
            await Task.WhenAll(accept, connect);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException)
        {
            if (accept.IsCompletedSuccessfully) accept.Result.Dispose();
            if (connect.IsCompletedSuccessfully) connect.Result.Dispose();
            cancellation.ThrowIfCancellationRequested();
            // Report the side that failed on its own, not the one cancelled because of it.
            Exception? Own(Task t) => t.Exception?.InnerException is { } x and not OperationCanceledException ? x : null;
            string what = Own(connect) is { } c ? $"it could not reach {Name(next)} at {endpoints[next]} ({c.Message})"
                : Own(accept) is { } a ? $"{Name(prev)} did not connect to it ({a.Message})"
                : !accept.IsCompletedSuccessfully ? $"{Name(prev)} did not connect to it"
                : $"it could not reach {Name(next)} at {endpoints[next]}";
            throw new ClusterException($"{Name(rank)}: the gradient ring did not form within {timeout.TotalSeconds:0.#} s: {what}", e);
        }
        return new TcpRing(rank, world, connect.Result, accept.Result, timeout, runId) { _ranks = ranks };
    }

    /// <summary>
    /// Sums <paramref name="data"/>[0, length) over the ring's ranks, in place; every rank ends
    /// with the same bits. Every rank must call it with the same step and length, in the same
    /// order (the ring counts its operations); a rank that does not fails the call on its
    /// neighbours before they use its data.
    /// </summary>
    public void AllReduce(float[] data, int length, long step)
    {
        if (WorldSize == 1) return;
        long sequence = _sequence++;
        int longest = (length + WorldSize - 1) / WorldSize;
        if (_incoming.Length < longest) _incoming = new float[longest];
        try
        {
            int exchange = 0;
            for (int s = 0; s < WorldSize - 1; s++)
                Exchange(data, length, step, sequence, exchange++, send: Mod(Rank - s), receive: Mod(Rank - s - 1), add: true);
            for (int s = 0; s < WorldSize - 1; s++)
                Exchange(data, length, step, sequence, exchange++, send: Mod(Rank + 1 - s), receive: Mod(Rank - s), add: false);
        }
        catch (ClusterException)
        {
            // A broken ring is not used again: closing both connections now makes the failure
            // travel around the ring at once instead of at each rank's deadline.
            Dispose();
            throw;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            Dispose();
            LostNeighbour = true;
            throw new ClusterException($"{Name(Rank)}: the gradient ring failed in step {step}: {Describe(e, receiving: true)}", e);
        }
    }

    public void Dispose()
    {
        _next.Dispose();
        _prev.Dispose();
        _sendDeadline.Dispose();
    }

    /// <summary>Sends segment <paramref name="send"/> to rank + 1 while receiving segment <paramref name="receive"/> from rank − 1.</summary>
    private void Exchange(float[] data, int length, long step, long sequence, int exchange, int send, int receive, bool add)
    {
        var (s0, s1) = Segment(send, length);
        var (r0, r1) = Segment(receive, length);
        WriteHeader(_sendHeader, Rank, step, sequence, exchange, send, length, s1 - s0);
        _sendDeadline.CancelAfter(_timeout);
        var sending = SendAsync(_sendHeader, FloatBytes.AsMemory(data, s0, s1 - s0), _sendDeadline.Token);
        try
        {
            ReceiveAll(_receivedHeader);
            WriteHeader(_expectedHeader, Prev, step, sequence, exchange, receive, length, r1 - r0);
            if (!_receivedHeader.AsSpan().SequenceEqual(_expectedHeader))
                throw new ClusterException($"{Name(Rank)}: the gradient ring failed in step {step}: {Name(Prev)} sent {DescribeHeader(_receivedHeader)} " +
                                           $"where {Name(Rank)} expected {DescribeHeader(_expectedHeader)}");
            var target = add ? _incoming.AsSpan(0, r1 - r0) : data.AsSpan(r0, r1 - r0);
            ReceiveAll(MemoryMarshal.AsBytes(target));
            if (add) FloatSums.AddFirst(_incoming.AsSpan(0, r1 - r0), data.AsSpan(r0, r1 - r0));
        }
        catch (Exception e)
        {
            // The ring is broken: abort our send rather than wait out its deadline.
            bool nextClosed = HasClosed(_next);
            _next.Dispose();
            try { sending.GetAwaiter().GetResult(); } catch (Exception) { /* the receive's failure is the one to report */ }
            if (e is ClusterException) throw;
            if (e is not (SocketException or IOException or ObjectDisposedException)) throw;
            LostNeighbour = true;
            string also = nextClosed && Next != Prev ? $"; {Name(Next)} closed its ring connection too" : "";
            throw new ClusterException($"{Name(Rank)}: the gradient ring failed in step {step}: {Describe(e, receiving: true)}{also}", e);
        }
        try
        {
            sending.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            LostNeighbour = true;
            throw new ClusterException($"{Name(Rank)}: the gradient ring failed in step {step}: {Describe(e, receiving: false)}", e);
        }
        if (!_sendDeadline.TryReset())
        {
            _sendDeadline.Dispose();
            _sendDeadline = new CancellationTokenSource();
        }
    }

    /// <summary>The header, then the payload: two sends on the socket, no copy of the payload.</summary>
    private async Task SendAsync(ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> payload, CancellationToken cancellation)
    {
        await SendAllAsync(header, cancellation);
        await SendAllAsync(payload, cancellation);
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellation)
    {
        while (bytes.Length > 0)
        {
            int sent = await _next.SendAsync(bytes, SocketFlags.None, cancellation);
            bytes = bytes[sent..];
        }
    }

    private void ReceiveAll(Span<byte> bytes)
    {
        while (bytes.Length > 0)
        {
            int received = _prev.Receive(bytes);
            if (received == 0) throw new IOException($"{Name(Prev)} closed its ring connection");
            bytes = bytes[received..];
        }
    }

    /// <summary>Whether the connection to rank + 1 (which never carries data this way) has seen its end or an error.</summary>
    private static bool HasClosed(Socket socket)
    {
        try
        {
            return socket.Poll(0, SelectMode.SelectRead) || socket.Poll(0, SelectMode.SelectError);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return true;
        }
    }

    private void WriteHeader(Span<byte> h, int sender, long step, long sequence, int exchange, int segment, int total, int count)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(h, SegmentMagic);
        BinaryPrimitives.WriteInt32LittleEndian(h[4..], sender);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], _runHash);
        BinaryPrimitives.WriteInt64LittleEndian(h[16..], step);
        BinaryPrimitives.WriteInt64LittleEndian(h[24..], sequence);
        BinaryPrimitives.WriteInt32LittleEndian(h[32..], exchange);
        BinaryPrimitives.WriteInt32LittleEndian(h[36..], segment);
        BinaryPrimitives.WriteInt32LittleEndian(h[40..], total);
        BinaryPrimitives.WriteInt32LittleEndian(h[44..], count * sizeof(float));
    }

    private static string DescribeHeader(ReadOnlySpan<byte> h) =>
        BinaryPrimitives.ReadUInt32LittleEndian(h) != SegmentMagic
            ? $"[not a ring header: {Convert.ToHexString(h[..16])}…]"
            : $"[from rank {BinaryPrimitives.ReadInt32LittleEndian(h[4..])}, run {BinaryPrimitives.ReadUInt64LittleEndian(h[8..]):x16}, " +
              $"step {BinaryPrimitives.ReadInt64LittleEndian(h[16..])}, operation #{BinaryPrimitives.ReadInt64LittleEndian(h[24..])}, " +
              $"exchange {BinaryPrimitives.ReadInt32LittleEndian(h[32..])}, segment {BinaryPrimitives.ReadInt32LittleEndian(h[36..])}, " +
              $"{BinaryPrimitives.ReadInt32LittleEndian(h[44..])} bytes of {BinaryPrimitives.ReadInt32LittleEndian(h[40..])} values]";

    /// <summary>A 64-bit tag of the run id for the segment headers (the handshake already proved the run; this catches a mix-up, not an attacker).</summary>
    private static ulong RunHash(string runId) =>
        BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(Encoding.UTF8.GetBytes("bndist-ring/run/" + runId)));

    private (int Start, int End) Segment(int index, int length) =>
        ((int)((long)length * index / WorldSize), (int)((long)length * (index + 1) / WorldSize));

    private int Mod(int i) => ((i % WorldSize) + WorldSize) % WorldSize;

    /// <summary>What went wrong, naming the neighbour on the side where it went wrong.</summary>
    private string Describe(Exception e, bool receiving)
    {
        int peer = receiving ? Prev : Next;
        return e switch
        {
            IOException { InnerException: null } io => io.Message, // "rank p closed its ring connection"
            SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock } =>
                $"{Name(Prev)} sent nothing within {_timeout.TotalSeconds:0.#} s",
            OperationCanceledException => $"{Name(Next)} took nothing within {_timeout.TotalSeconds:0.#} s",
            SocketException { SocketErrorCode: SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted or SocketError.NotConnected } s =>
                $"{Name(peer)} closed its ring connection ({s.Message})",
            ObjectDisposedException or SocketException { SocketErrorCode: SocketError.OperationAborted } =>
                $"{Name(Rank)}'s ring was closed while it exchanged with {Name(Prev)} and {Name(Next)}",
            _ => $"the ring connection with {Name(peer)} failed: {e.Message}",
        };
    }

    /// <summary>HMAC-SHA256(token, label ‖ acceptor's nonce ‖ connector's nonce); the label names the role, the run and both ranks.</summary>
    private static byte[] Proof(byte[] key, string role, string runId, int from, int to, ReadOnlySpan<byte> acceptorNonce, ReadOnlySpan<byte> connectorNonce)
    {
        byte[] label = Encoding.UTF8.GetBytes($"bndist-ring/v2/{role}/{runId.Length}:{runId}/{from}/{to}/");
        var message = new byte[label.Length + 2 * NonceBytes];
        label.CopyTo(message, 0);
        acceptorNonce.CopyTo(message.AsSpan(label.Length));
        connectorNonce.CopyTo(message.AsSpan(label.Length + NonceBytes));
        return HMACSHA256.HashData(key, message);
    }

    /// <summary>The connecting side: reads the challenge, proves the token over both nonces, checks the acceptor's proof.</summary>
    private static async Task<Socket> ConnectAsync(string endpoint, int rank, int next, byte[] key, string runId, CancellationToken cancellation)
    {
        int colon = endpoint.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out int port))
            throw new IOException($"rank {next}'s ring endpoint '{endpoint}' is not host:port");
        string host = endpoint[..colon];
        while (true)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(host, port, cancellation);
                var challenge = new byte[ChallengeBytes];
                await ReceiveExactlyAsync(socket, challenge, cancellation);
                if (BinaryPrimitives.ReadUInt32LittleEndian(challenge) != HandshakeMagic || BinaryPrimitives.ReadInt32LittleEndian(challenge.AsSpan(4)) != next)
                    throw new IOException($"{endpoint} is not rank {next}'s ring endpoint");
                var acceptorNonce = challenge.AsSpan(8, NonceBytes).ToArray();
                var connectorNonce = RandomNumberGenerator.GetBytes(NonceBytes);
                var hello = new byte[HelloBytes];
                BinaryPrimitives.WriteUInt32LittleEndian(hello, HandshakeMagic);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), rank);
                connectorNonce.CopyTo(hello, 8);
                Proof(key, "connect", runId, rank, next, acceptorNonce, connectorNonce).CopyTo(hello, 8 + NonceBytes);
                await socket.SendAsync(hello, SocketFlags.None, cancellation);
                var answer = new byte[ProofBytes];
                await ReceiveExactlyAsync(socket, answer, cancellation);
                if (!CryptographicOperations.FixedTimeEquals(answer, Proof(key, "accept", runId, next, rank, acceptorNonce, connectorNonce)))
                    throw new IOException($"{endpoint} did not prove it holds the run's token: it is not rank {next}");
                return socket;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused && !cancellation.IsCancellationRequested)
            {
                socket.Dispose();
                await Task.Delay(100, cancellation);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Accepts until rank <paramref name="prev"/> passes the handshake; anyone else is closed
    /// unanswered. Each connection's handshake runs on its own, so a peer that connects and stays
    /// silent (or is slow) does not hold up the real neighbour behind it; once one has passed,
    /// the listener stops and the handshakes still running are cancelled and closed.
    /// </summary>
    private static async Task<Socket> AcceptAsync(Socket listener, int rank, int prev, byte[] key, string runId, CancellationToken cancellation)
    {
        var neighbour = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        async Task HandshakeAsync(Socket socket)
        {
            try
            {
                if (await TryHandshakeAsync(socket, rank, prev, key, runId, stop.Token) && neighbour.TrySetResult(socket)) return;
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
            {
                // a connection that broke or stalled during its handshake is not our neighbour
            }
            socket.Dispose();
        }
        async Task AcceptLoopAsync()
        {
            try
            {
                while (true) _ = HandshakeAsync(await listener.AcceptAsync(stop.Token));
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                neighbour.TrySetCanceled(stop.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                neighbour.TrySetException(e);
            }
        }
        var accepting = AcceptLoopAsync();
        using (cancellation.Register(() => neighbour.TrySetCanceled(cancellation)))
        {
            try
            {
                return await neighbour.Task;
            }
            finally
            {
                stop.Cancel(); // the accept loop and the handshakes still running end (their sockets are closed)
                await accepting;
            }
        }
    }

    /// <summary>The acceptor's half of the handshake on one connection: true when it is rank <paramref name="prev"/> with the token.</summary>
    private static async Task<bool> TryHandshakeAsync(Socket socket, int rank, int prev, byte[] key, string runId, CancellationToken cancellation)
    {
        var acceptorNonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var challenge = new byte[ChallengeBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(challenge, HandshakeMagic);
        BinaryPrimitives.WriteInt32LittleEndian(challenge.AsSpan(4), rank);
        acceptorNonce.CopyTo(challenge, 8);
        await socket.SendAsync(challenge, SocketFlags.None, cancellation);
        var hello = new byte[HelloBytes];
        await ReceiveExactlyAsync(socket, hello, cancellation);
        byte[] connectorNonce = hello[8..(8 + NonceBytes)];
        bool valid = BinaryPrimitives.ReadUInt32LittleEndian(hello) == HandshakeMagic &&
                     BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)) == prev &&
                     CryptographicOperations.FixedTimeEquals(hello.AsSpan(8 + NonceBytes, ProofBytes),
                         Proof(key, "connect", runId, prev, rank, acceptorNonce, connectorNonce));
        if (!valid) return false;
        await socket.SendAsync(Proof(key, "accept", runId, rank, prev, acceptorNonce, connectorNonce), SocketFlags.None, cancellation);
        socket.NoDelay = true;
        return true;
    }

    private static async Task ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellation)
    {
        while (buffer.Length > 0)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellation);
            if (n == 0) throw new IOException("the connection closed during the ring handshake");
            buffer = buffer[n..];
        }
    }
}
