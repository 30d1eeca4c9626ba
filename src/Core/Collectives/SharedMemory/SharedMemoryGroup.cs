using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>
/// The ranks of one host reducing float64 vectors (BN statistics and gradient sums) through one
/// memory-mapped file: the latency path of synchronized BN between co-located processes (no
/// socket, no serialization, no coordinator on the critical path).
/// </summary>
/// <remarks>
/// <para>
/// <b>Layout.</b> A 4 KiB header (constants, the arrival counter, two generation words each on
/// its own cache line, the abort flag and its reason), then one block per local rank (its pid,
/// its arrival count, and two slots), then two result slots. A slot is a 64-byte operation
/// header (step, kind, layer, length) and up to <see cref="Capacity"/> doubles.
/// </para>
/// <para>
/// <b>One operation</b> (sequence s, slot s mod 2): each rank writes its header and values into
/// its own slot and increments the arrival counter; the last to arrive resets the counter and
/// bumps the generation word. Then every rank checks the headers and sums the slots in local-rank
/// order starting from 0.0 — the order of the coordinator's hub — so the bits equal the gRPC
/// path's for the same ranks. Two slots suffice: a rank writes slot s mod 2 again only at s + 2,
/// after every rank arrived at s + 1, which each does only after reading the slots of s.
/// </para>
/// <para>
/// <b>Hierarchical.</b> When the operation has a host exchange (the host leader, local rank 0,
/// of a run on several hosts), only the leader sums; it hands the host's sum to the exchange,
/// which replaces it by the global sum, and publishes that in a result slot for the others.
/// </para>
/// <para>
/// <b>Waiting.</b> A rank spins briefly (yielding when the host has fewer cores than ranks), then
/// sleeps on a futex of the generation word; the rank that completes wakes the sleepers only if
/// there are any. Every wait has the operation deadline, watches the abort flag, and every
/// <see cref="LivenessInterval"/> checks that the ranks it waits for still run: a rank whose
/// process is gone is named. Any failure is written to the segment, so every rank fails with the
/// same reason at once.
/// </para>
/// <para>
/// <b>Lifetime.</b> Ranks create-or-open the file, write their pid and wait until all have attached;
/// then local rank 0 unlinks it. From then on the mapping lives exactly as long as the processes
/// that hold it, so nothing is left in /dev/shm when a run ends, fails or is killed.
/// </para>
/// </remarks>
public sealed unsafe partial class SharedMemoryGroup : IProcessGroup, IFloatAllReduce, IDisposable
{
    /// <summary>Doubles per slot: BN statistics of up to 32,767 channels.</summary>
    public const int Capacity = 1 << 16;

    /// <summary>
    /// Floats per gradient slot (1 MiB): longer gradients go through in chunks of this many. A chunk,
    /// its sum and its result stay in the caches between copy-in, sum and copy-out; measured at 16 MiB,
    /// K = 2 (bench/RESULTS.md): chunks of 256 Ki and 128 Ki floats 2.25 ms, 64 Ki 2.9 ms, 1 Mi 3.0 ms.
    /// </summary>
    public const int ChunkFloats = 1 << 18;

    private const long Magic = 0x32304D48535A4E42; // "BNZSHM02": 1 MiB gradient slots
    private const int HeaderBytes = 4096, Line = 64, SlotHeaderBytes = 64, ReasonBytes = 2048;
    private const int SlotBytes = SlotHeaderBytes + Capacity * sizeof(double);
    private const int RankBlockBytes = (Line + 2 * SlotBytes + 4095) / 4096 * 4096;
    private const int FloatSlotBytes = SlotHeaderBytes + ChunkFloats * sizeof(float);
    // Header fields.
    private const int OffMagic = 0, OffSize = 8, OffCapacity = 12, OffAttached = 16;
    private const int OffArrived = 1 * Line, OffGeneration = 2 * Line, OffSleepers = 3 * Line;
    private const int OffResultGeneration = 4 * Line, OffResultSleepers = 5 * Line, OffAborted = 6 * Line, OffReasonLength = 6 * Line + 4;
    private const int OffReason = 7 * Line;
    // Channel 1 (gradients, from a thread of their own): its own arrival counter, generation and sleepers.
    private const int OffArrived1 = 40 * Line, OffGeneration1 = 41 * Line, OffSleepers1 = 42 * Line;
    // Rank block fields.
    private const int OffPid = 0, OffArrivals = 8, OffArrivals1 = 16;

    /// <summary>How often a waiting rank checks that the ranks it waits for still run.</summary>
    public static readonly TimeSpan LivenessInterval = TimeSpan.FromMilliseconds(100);

    private static readonly TimeSpan SleepSlice = TimeSpan.FromMilliseconds(20);

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly int[] _ranks;
    private readonly int[] _pids;
    private readonly bool _oversubscribed;
    private long _sequence;
    private readonly long[] _barriers = new long[2];
    private bool _completed, _disposed;

    private SharedMemoryGroup(MemoryMappedFile file, MemoryMappedViewAccessor view, byte* @base, string path, int localRank, int[] ranks, TimeSpan timeout)
    {
        (_file, _view, Path, LocalRank, _ranks, Timeout) = (file, view, path, localRank, ranks, timeout);
        _base = @base;
        _pids = new int[ranks.Length];
        _oversubscribed = ranks.Length > HostProcessors.Online;
    }

    /// <summary>Whether this platform has what the group needs (Linux, /dev/shm, futex).</summary>
    public static bool IsSupported => Futex.Supported && Directory.Exists(DefaultDirectory);

    /// <summary>Where segments live: tmpfs, so the file is memory.</summary>
    public const string DefaultDirectory = "/dev/shm";

    /// <summary>The file the group was created from (unlinked once every rank attached).</summary>
    public string Path { get; }

    public int LocalRank { get; }

    public int Size => _ranks.Length;

    /// <summary>The global ranks of the members, by local rank (for messages).</summary>
    public IReadOnlyList<int> Ranks => _ranks;

    /// <summary>How long a rank waits for the others in one operation.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Bytes of the segment for <paramref name="size"/> ranks (tmpfs gives pages only to what is touched).</summary>
    public static long SegmentBytes(int size) => HeaderBytes + (long)(size + 1) * RankBlockBytes + (long)(size + 1) * FloatSlotBytes;

    /// <summary>
    /// Maps the segment at <paramref name="path"/> (created by whichever rank comes first) as local
    /// rank <paramref name="localRank"/> of the ranks <paramref name="ranks"/> (global rank numbers, in
    /// local order) and waits until all have attached, within <paramref name="timeout"/>; then local
    /// rank 0 removes the file. Throws <see cref="CollectiveException"/> naming the ranks that never came.
    /// </summary>
    public static SharedMemoryGroup Attach(string path, int localRank, IReadOnlyList<int> ranks, TimeSpan timeout,
        CancellationToken cancellation = default) =>
        AttachAs(path, localRank, ranks, timeout, Environment.ProcessId, cancellation);

    /// <summary>As <see cref="Attach"/>, registering <paramref name="pid"/> as the rank's process (tests stand in for another process).</summary>
    internal static SharedMemoryGroup AttachAs(string path, int localRank, IReadOnlyList<int> ranks, TimeSpan timeout, int pid,
        CancellationToken cancellation = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ranks.Count, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(localRank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(localRank, ranks.Count);
        long bytes = SegmentBytes(ranks.Count);
        MemoryMappedFile file;
        try
        {
            // FileShare.Delete: local rank 0 unlinks it while the others still hold it.
            using var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            if (stream.Length < bytes) stream.SetLength(bytes); // the same length from every rank: idempotent
            if (!SegmentSpace.TryReserve(stream.SafeFileHandle, bytes))
            {
                string directory = System.IO.Path.GetDirectoryName(path) ?? "/dev/shm";
                string free = SegmentSpace.Free(directory) is { } f ? $"{f / (1 << 20)} MiB free" : "free space unknown";
                throw new CollectiveException($"rank {ranks[localRank]}: {directory} has no room for the run's shared-memory segment " +
                    $"({(bytes + (1 << 20) - 1) >> 20} MiB for {ranks.Count} ranks; {free}): give it more (docker run --shm-size) or use --stats-transport grpc");
            }
            file = MemoryMappedFile.CreateFromFile(stream, null, bytes, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        }
        catch (CollectiveException)
        {
            // No room: the file holds nothing yet, and the ranks that opened it fail at their deadline.
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CollectiveException($"rank {ranks[localRank]}: cannot open the shared-memory segment {path}: {e.Message}", e);
        }
        var view = file.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.ReadWrite);
        byte* @base = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref @base);
        @base += view.PointerOffset;
        var group = new SharedMemoryGroup(file, view, @base, path, localRank, [.. ranks], timeout);
        try
        {
            group.Join(pid, cancellation);
        }
        catch
        {
            group.Dispose();
            // The ranks that came fail too (the group is marked failed); the file must not outlive them.
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
        return group;
    }

    private void Join(int pid, CancellationToken cancellation)
    {
        // Every rank writes the same constants: whoever comes first, the header is the same.
        var magic = (long*)(_base + OffMagic);
        if (Volatile.Read(ref *magic) == 0)
        {
            *(int*)(_base + OffSize) = Size;
            *(int*)(_base + OffCapacity) = Capacity;
            Interlocked.CompareExchange(ref *magic, Magic, 0);
        }
        if (*magic != Magic || *(int*)(_base + OffSize) != Size || *(int*)(_base + OffCapacity) != Capacity)
            throw new CollectiveException($"rank {_ranks[LocalRank]}: {Path} is not a segment of {Size} ranks (another run's file?)");
        var block = RankBlock(LocalRank);
        if (Interlocked.CompareExchange(ref *(int*)(block + OffPid), pid, 0) != 0)
            throw new CollectiveException($"rank {_ranks[LocalRank]}: local rank {LocalRank} of {Path} is already taken");
        _pids[LocalRank] = pid;
        Interlocked.Increment(ref *(int*)(_base + OffAttached));
        var deadline = Stopwatch.GetTimestamp() + (long)(Timeout.TotalSeconds * Stopwatch.Frequency);
        while (Volatile.Read(ref *(int*)(_base + OffAttached)) < Size)
        {
            ThrowIfAborted();
            cancellation.ThrowIfCancellationRequested();
            if (Stopwatch.GetTimestamp() > deadline)
            {
                var missing = Enumerable.Range(0, Size).Where(r => Volatile.Read(ref *(int*)(RankBlock(r) + OffPid)) == 0).Select(r => _ranks[r]);
                throw new CollectiveException($"rank(s) {string.Join(", ", missing)} did not attach to the host's shared memory {Path} " +
                                              $"within {Timeout.TotalSeconds:0.#} s (workers that do not share /dev/shm need different " +
                                              "--host-id values, or --stats-transport grpc)");
            }
            Thread.Sleep(1);
        }
        for (int r = 0; r < Size; r++) _pids[r] = Volatile.Read(ref *(int*)(RankBlock(r) + OffPid));
        if (LocalRank == 0)
        {
            try
            {
                File.Delete(Path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The mapping works regardless; the file goes when the run's processes are gone
                // from /dev/shm's point of view only if someone removes it: say so in the failure path.
                Fail($"rank {_ranks[0]} could not remove {Path}: {e.Message}");
                throw;
            }
        }
    }

    /// <summary>
    /// Replaces <paramref name="values"/> by their sum over the group's ranks (local-rank order), or,
    /// with a <paramref name="exchange"/> (the leader of a multi-host run; then every rank of the group
    /// must be in leader mode, the others passing null and <paramref name="hierarchical"/> true), by
    /// what the exchange makes of the host's sum.
    /// </summary>
    public void AllReduce(Span<double> values, long step, CollectiveKind kind, int layer, bool hierarchical = false,
        HostExchange? exchange = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfAborted();
        if (values.Length > Capacity)
            Throw($"{Describe(step, kind, layer)} has {values.Length} values, more than the shared-memory slot's {Capacity}; " +
                  "use --stats-transport grpc");
        if (hierarchical && (exchange is not null) != (LocalRank == 0))
            throw new ArgumentException("in a hierarchical operation exactly the leader (local rank 0) has the host exchange");
        long sequence = _sequence++;
        int parity = (int)(sequence & 1);
        var slot = Slot(RankBlock(LocalRank), parity);
        *(long*)slot = step;
        *(int*)(slot + 8) = (int)kind;
        *(int*)(slot + 12) = layer;
        *(int*)(slot + 16) = values.Length;
        values.CopyTo(new Span<double>(slot + SlotHeaderBytes, values.Length));
        var result = (int*)(_base + OffResultGeneration);
        int seenResult = Volatile.Read(ref *result);
        Barrier(step, kind, layer, wait: !hierarchical || LocalRank == 0);
        if (hierarchical && LocalRank != 0)
        {
            WaitChange(result, seenResult, (int*)(_base + OffResultSleepers), _barriers[0], step, kind, layer, leaderOnly: true);
            var answer = Slot(ResultBlock, parity);
            if (*(long*)answer != step || *(int*)(answer + 8) != (int)kind || *(int*)(answer + 12) != layer || *(int*)(answer + 16) != values.Length)
                Throw($"rank {_ranks[LocalRank]}: the host leader answered {Describe(*(long*)answer, (CollectiveKind)(*(int*)(answer + 8)), *(int*)(answer + 12))} " +
                      $"to {Describe(step, kind, layer)}");
            new ReadOnlySpan<double>(answer + SlotHeaderBytes, values.Length).CopyTo(values);
            return;
        }
        CheckHeaders(parity, step, kind, layer, values.Length);
        // Σ in local-rank order from 0.0, as the hub: bit-identical to the gRPC path for the same ranks.
        values.Clear();
        for (int r = 0; r < Size; r++)
        {
            var other = new ReadOnlySpan<double>(Slot(RankBlock(r), parity) + SlotHeaderBytes, values.Length);
            for (int i = 0; i < values.Length; i++) values[i] += other[i];
        }
        if (!hierarchical) return;
        try
        {
            exchange!(values);
        }
        catch (Exception e)
        {
            Fail($"the host leader (rank {_ranks[0]}) failed in {Describe(step, kind, layer)}: {e.Message}");
            throw;
        }
        var published = Slot(ResultBlock, parity);
        *(long*)published = step;
        *(int*)(published + 8) = (int)kind;
        *(int*)(published + 12) = layer;
        *(int*)(published + 16) = values.Length;
        values.CopyTo(new Span<double>(published + SlotHeaderBytes, values.Length));
        Interlocked.Increment(ref *result);
        if (Volatile.Read(ref *(int*)(_base + OffResultSleepers)) > 0) Futex.WakeAll(result);
    }

    /// <summary>The statistics of one host (every rank sums): <see cref="IProcessGroup"/>.</summary>
    void IProcessGroup.AllReduce(Span<double> values, long step, CollectiveKind kind, int layer) => AllReduce(values, step, kind, layer);

    /// <summary>Fails the group: every rank's current and next operation throws with <paramref name="reason"/> (the first reason wins).</summary>
    public void Fail(string reason)
    {
        if (_disposed) return;
        var aborted = (int*)(_base + OffAborted);
        if (Interlocked.CompareExchange(ref *aborted, 1, 0) == 0)
        {
            int length = Encoding.UTF8.GetBytes(reason.AsSpan(0, Math.Min(reason.Length, ReasonBytes / 4)), new Span<byte>(_base + OffReason, ReasonBytes));
            Volatile.Write(ref *(int*)(_base + OffReasonLength), length);
            Volatile.Write(ref *aborted, 2); // the reason is readable
        }
        // Wake every sleeper: each looks at the flag before anything else.
        foreach (int word in (ReadOnlySpan<int>)[OffGeneration, OffResultGeneration, OffGeneration1])
        {
            Interlocked.Increment(ref *(int*)(_base + word));
            Futex.WakeAll((int*)(_base + word));
        }
    }

    /// <summary>This rank has done its last operation: disposing then does not fail the others.</summary>
    public void Complete() => _completed = true;

    /// <summary>Unless <see cref="Complete"/> was called, fails the others, telling them this rank left (and wakes this rank's own waiting threads).</summary>
    public void Leave()
    {
        if (!_completed && !_disposed) Fail($"rank {_ranks[LocalRank]} (pid {_pids[LocalRank]}) left the run");
    }

    /// <summary>
    /// <see cref="Leave"/>, then unmaps the segment. No thread of this process may still be inside an
    /// operation: call <see cref="Leave"/> first and join them.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        Leave();
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }

    private byte* RankBlock(int localRank) => _base + HeaderBytes + (long)localRank * RankBlockBytes;

    private byte* ResultBlock => RankBlock(Size);

    private static byte* Slot(byte* block, int parity) => block + Line + (long)parity * SlotBytes;

    /// <summary>Rank r's gradient slot; <see cref="Size"/>: the result slot.</summary>
    private byte* FloatSlot(int localRank) => _base + HeaderBytes + (long)(Size + 1) * RankBlockBytes + (long)localRank * FloatSlotBytes;

    private void CheckHeaders(int parity, long step, CollectiveKind kind, int layer, int length)
    {
        for (int r = 0; r < Size; r++)
        {
            var slot = Slot(RankBlock(r), parity);
            long s = *(long*)slot;
            var k = (CollectiveKind)(*(int*)(slot + 8));
            int l = *(int*)(slot + 12), n = *(int*)(slot + 16);
            if (s != step || k != kind || l != layer || n != length)
                Throw($"rank {_ranks[r]} sent {Describe(s, k, l)} ({n} values) while rank {_ranks[LocalRank]} sent {Describe(step, kind, layer)} ({length} values)");
        }
    }

    private void ThrowIfAborted()
    {
        var aborted = (int*)(_base + OffAborted);
        int state = Volatile.Read(ref *aborted);
        if (state == 0) return;
        // The writer is between its claim and the reason: nanoseconds, unless it died right there.
        long giveUp = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10;
        while ((state = Volatile.Read(ref *aborted)) == 1)
        {
            if (Stopwatch.GetTimestamp() > giveUp) throw new CollectiveException($"the host's shared memory {Path} failed (a rank died while saying why)");
            Thread.Yield();
        }
        int length = Volatile.Read(ref *(int*)(_base + OffReasonLength));
        throw new CollectiveException(Encoding.UTF8.GetString(_base + OffReason, Math.Clamp(length, 0, ReasonBytes)));
    }

    /// <summary>Fails the group with <paramref name="reason"/> and throws it.</summary>
    private void Throw(string reason)
    {
        Fail(reason);
        ThrowIfAborted();
        throw new CollectiveException(reason);
    }

    private static string Describe(long step, CollectiveKind kind, int layer) => $"step {step} {kind}{(layer >= 0 ? $" layer {layer}" : "")}";
}

/// <summary>The host leader's exchange with the other hosts: replaces the host's sum by the global sum.</summary>
public delegate void HostExchange(Span<double> hostSum);

/// <summary>A collective failed; the message names the operation and the rank at fault.</summary>
public sealed class CollectiveException(string message, Exception? inner = null) : Exception(message, inner);
