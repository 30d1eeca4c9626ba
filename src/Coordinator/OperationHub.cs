using System.Diagnostics;
using BnDist.Core.Collectives;

namespace BnDist.Coordinator;

/// <summary>A completed operation: the sum over ranks and what each rank sent with it.</summary>
public sealed record CompletedOperation(OperationHeader Header, double[] Sum, float[]? FloatSum, double[][] PerRank,
    StepTiming[] Timings, double[] WaitSeconds);

/// <summary>
/// Collects the contributions of K ranks to each collective operation and sums them once the
/// last one arrives — in rank order, so the result is deterministic and equals the in-process
/// reference (<see cref="InProcessGroup"/>). The protocol, enforced here:
/// <list type="number">
/// <item>each rank numbers its operations 0, 1, 2, … (the sequence) and sends them in order;</item>
/// <item>all ranks send the same header (step, kind, layer, length) for the same sequence;</item>
/// <item>float64 operations come in one message; float32 ones in chunks, in order of offset, and
///   every range that all ranks have sent is summed at once and handed to
///   <c>reduced</c> (offset, count), so the answer streams back while later chunks arrive;</item>
/// <item>an operation whose first contribution is older than the timeout fails, naming the ranks
///   that never sent theirs (the stall inspector).</item>
/// </list>
/// Any violation fails the whole run: <c>fail</c> is called once with a reason naming the
/// rank and the operation. Thread-safe; no gRPC types.
/// <para>
/// The callbacks (<c>completed</c>, <c>reduced</c>, <c>fail</c>) never run under the hub's lock:
/// they are queued under it, in the order the events happened, and run after it is released by
/// the thread that queued the first of them (the others only queue), so they run one at a time
/// and in order. That thread may write the answers to the streams itself (the latency path), but
/// a slow write or a blocked subscriber no longer stops the other ranks' contributions.
/// </para>
/// </summary>
/// <remarks>
/// The participants are numbered 0 … worldSize − 1; <c>rankNames</c> gives the global rank each
/// stands for in messages (the hub of host leaders numbers hosts, and names their leaders).
/// </remarks>
public sealed class OperationHub(int worldSize, TimeSpan timeout, Action<CompletedOperation> completed, Action<string> fail,
    Action<OperationHeader, float[], int, int>? reduced = null, IReadOnlyList<int>? rankNames = null)
{
    private string Name(int participant) => $"rank {(rankNames is null ? participant : rankNames[participant])}";

    private string Names(IEnumerable<int> participants) =>
        string.Join(", ", participants.Select(p => rankNames is null ? p : rankNames[p]));

    private readonly object _gate = new();
    private readonly Dictionary<long, Operation> _pending = [];
    private readonly long[] _nextSequence = new long[worldSize];
    // Gradient buffers, reused from one gradient operation to the next (they are tens of MiB:
    // allocating them per step cost page faults and zeroing). Safe to reuse: the next gradient
    // operation reduces nothing before every rank has sent a chunk of it, which a rank does only
    // after it has received the whole previous sum, so no answer still reads the old one.
    private readonly float[]?[] _rankFloats = new float[worldSize][];
    private float[]? _floatSum;
    private string? _failure;
    // Callbacks due, in the order of the events; run outside the lock by one thread at a time.
    private readonly Queue<Action> _due = new();
    private bool _dispatching;

    public int WorldSize => worldSize;

    public string? Failure
    {
        get { lock (_gate) return _failure; }
    }

    /// <summary>The operation a rank is waiting in, for error messages ("waiting in step 3 …").</summary>
    public string DescribePending()
    {
        lock (_gate)
        {
            if (_pending.Count == 0) return "between operations";
            var op = _pending.Values.MinBy(o => o.Header.Sequence)!;
            return $"{op.Header}, which ranks {Names(op.ArrivedRanks())} had sent";
        }
    }

    /// <summary>A float64 contribution (BN statistics, BN gradient sums, metrics, a commit).</summary>
    public void Contribute(int rank, OperationHeader header, double[] values, StepTiming timing = default)
    {
        lock (_gate) Add(rank, header, values, timing);
        RunDue();
    }

    /// <summary>One chunk of a float32 contribution, at <paramref name="offset"/> values.</summary>
    public void ContributeChunk(int rank, OperationHeader header, int offset, ReadOnlySpan<byte> bytes)
    {
        lock (_gate) AddChunk(rank, header, offset, bytes);
        RunDue();
    }

    private void Add(int rank, OperationHeader header, double[] values, StepTiming timing)
    {
        if (_failure is not null) return;
        if (header.Kind == CollectiveKind.Gradients)
        {
            Violation($"{Name(rank)} sent float64 values for {header}, which takes float32 chunks");
            return;
        }
        if (values.Length != header.Length)
        {
            Violation($"{Name(rank)} sent {values.Length} values for {header}");
            return;
        }
        var op = Open(rank, header);
        if (op is null) return;
        if (op.Doubles[rank] is not null)
        {
            Violation($"{Name(rank)} contributed twice to {header}");
            return;
        }
        op.Doubles[rank] = values;
        op.Timings[rank] = timing;
        Arrived(op, rank);
    }

    private void AddChunk(int rank, OperationHeader header, int offset, ReadOnlySpan<byte> bytes)
    {
        if (_failure is not null) return;
        if (header.Kind != CollectiveKind.Gradients)
        {
            Violation($"{Name(rank)} sent float32 chunks for {header}, which takes float64 values");
            return;
        }
        int count = bytes.Length / sizeof(float);
        if (header.Length == 0 || count == 0 || bytes.Length % sizeof(float) != 0)
        {
            Violation($"{Name(rank)} sent a malformed chunk of {header}: {bytes.Length} bytes at value {offset} " +
                      "(chunks are whole float32 values, at least one, of an operation of at least one)");
            return;
        }
        var op = Open(rank, header);
        if (op is null) return;
        var buffer = op.Floats[rank] ??= Reuse(ref _rankFloats[rank], header.Length);
        if (offset != op.Received[rank] || offset + count > header.Length)
        {
            Violation($"{Name(rank)} sent a malformed chunk of {header}: {bytes.Length} bytes at value {offset} " +
                      $"(expected value {op.Received[rank]} of {header.Length})");
            return;
        }
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(buffer.AsSpan(offset, count));
        op.Received[rank] += count;
        ReduceReady(op);
        if (op.Received[rank] == header.Length) Arrived(op, rank);
    }

    /// <summary>Fails the operation whose first contribution is older than the timeout.</summary>
    public void CheckDeadlines()
    {
        lock (_gate)
        {
            if (_failure is not null) return;
            foreach (var op in _pending.Values)
            {
                if (Stopwatch.GetElapsedTime(op.Opened) <= timeout) continue;
                var missing = Enumerable.Range(0, worldSize).Where(r => !op.Done[r]);
                Violation($"{op.Header}: rank(s) {Names(missing)} did not contribute within {timeout.TotalSeconds:0.#} s");
                break;
            }
        }
        RunDue();
    }

    /// <summary>Fails the run from outside (a disconnect); later contributions are ignored.</summary>
    public void Fail(string reason)
    {
        lock (_gate) Violation(reason);
        RunDue();
    }

    private Operation? Open(int rank, OperationHeader header)
    {
        if (header.Sequence != _nextSequence[rank])
        {
            Violation($"{Name(rank)} sent operation #{header.Sequence} ({header.Kind}, step {header.Step}) " +
                      $"but its next operation is #{_nextSequence[rank]}: the ranks are out of step");
            return null;
        }
        if (!_pending.TryGetValue(header.Sequence, out var op))
        {
            op = new Operation(header, worldSize);
            _pending.Add(header.Sequence, op);
        }
        else if (op.Header != header)
        {
            int first = op.ArrivedRanks().FirstOrDefault();
            Violation($"{Name(rank)} sent {header} where {Name(first)} sent {op.Header}");
            return null;
        }
        return op;
    }

    private void Arrived(Operation op, int rank)
    {
        op.Done[rank] = true;
        op.ArrivedAt[rank] = Stopwatch.GetTimestamp();
        _nextSequence[rank]++;
        if (++op.Count < worldSize) return;
        _pending.Remove(op.Header.Sequence);
        var done = Reduce(op);
        _due.Enqueue(() => completed(done));
    }

    /// <summary>Sums, in rank order, the float32 values every rank has sent and that are not summed yet.</summary>
    private void ReduceReady(Operation op)
    {
        int ready = int.MaxValue;
        for (int r = 0; r < worldSize; r++) ready = Math.Min(ready, op.Received[r]);
        int from = op.ReducedUpTo;
        if (ready <= from) return;
        var sum = op.FloatSum ??= Reuse(ref _floatSum, op.Header.Length);
        var target = sum.AsSpan(from, ready - from);
        op.Floats[0]!.AsSpan(from, ready - from).CopyTo(target);
        for (int r = 1; r < worldSize; r++) FloatSums.AddTo(target, op.Floats[r]!.AsSpan(from, ready - from));
        op.ReducedUpTo = ready;
        if (reduced is not null)
        {
            var header = op.Header;
            _due.Enqueue(() => reduced(header, sum, from, ready - from));
        }
    }

    private static float[] Reuse(ref float[]? buffer, int length) =>
        buffer is not null && buffer.Length == length ? buffer : buffer = new float[length];

    /// <summary>Sums in rank order; the wait of each rank is the time from its arrival to the last one's.</summary>
    private CompletedOperation Reduce(Operation op)
    {
        int n = op.Header.Length;
        double[] sum = [];
        float[]? floatSum = null;
        if (op.Floats[0] is not null)
        {
            floatSum = op.FloatSum ?? new float[n]; // summed chunk by chunk as the ranges became complete
        }
        else
        {
            sum = new double[n];
            for (int r = 0; r < worldSize; r++)
            {
                var d = op.Doubles[r]!;
                for (int i = 0; i < n; i++) sum[i] += d[i];
            }
        }
        long last = op.ArrivedAt.Max();
        var waits = op.ArrivedAt.Select(t => Stopwatch.GetElapsedTime(t, last).TotalSeconds).ToArray();
        return new CompletedOperation(op.Header, sum, floatSum, [.. op.Doubles.Select(d => d ?? [])], op.Timings, waits);
    }

    private void Violation(string reason)
    {
        if (_failure is not null) return;
        _failure = reason;
        _pending.Clear();
        _due.Enqueue(() => fail(reason));
    }

    /// <summary>
    /// Runs the due callbacks, outside the lock, in order; returns at once if another thread is
    /// already running them (it runs the ones queued meanwhile too).
    /// </summary>
    private void RunDue()
    {
        lock (_gate)
        {
            if (_dispatching || _due.Count == 0) return;
            _dispatching = true;
        }
        while (true)
        {
            Action next;
            lock (_gate)
            {
                if (!_due.TryDequeue(out next!))
                {
                    _dispatching = false;
                    return;
                }
            }
            try
            {
                next();
            }
            catch
            {
                lock (_gate) _dispatching = false;
                throw;
            }
        }
    }

    private sealed class Operation(OperationHeader header, int world)
    {
        public OperationHeader Header { get; } = header;
        public long Opened { get; } = Stopwatch.GetTimestamp();
        public double[]?[] Doubles { get; } = new double[world][];
        public float[]?[] Floats { get; } = new float[world][];
        public int[] Received { get; } = new int[world];
        public float[]? FloatSum { get; set; }
        public int ReducedUpTo { get; set; }
        public bool[] Done { get; } = new bool[world];
        public long[] ArrivedAt { get; } = new long[world];
        public StepTiming[] Timings { get; } = new StepTiming[world];
        public int Count { get; set; }

        public IEnumerable<int> ArrivedRanks() => Enumerable.Range(0, Done.Length).Where(r => Done[r] || Doubles[r] is not null || Floats[r] is not null);
    }
}
