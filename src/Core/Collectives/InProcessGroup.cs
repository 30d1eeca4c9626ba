using BnDist.Core.Backends;
using BnDist.Core.Layers;

namespace BnDist.Core.Collectives;

/// <summary>
/// K ranks in one process, one thread each, reducing through shared memory: the reference
/// implementation of <see cref="ICollective"/> and <see cref="IGradientReducer"/> that the
/// distributed ones must agree with. Values are summed in rank order (rank 0 first), as the
/// coordinator does, so the two give bit-identical results. Every rank must call the same
/// operations in the same order; a mismatch of kind, layer or length, or a rank that does
/// not arrive within the timeout, fails the operation on every rank with a message naming it.
/// </summary>
public sealed class InProcessGroup
{
    private readonly object _gate = new();
    private readonly TimeSpan _timeout;
    private readonly double[]?[] _doubles;
    private readonly float[]?[] _floats;
    private readonly (CollectiveKind Kind, int Layer, int Length)[] _headers;
    private int _arrived;
    private long _generation;
    private double[] _doubleResult = [];
    private float[] _floatResult = [];
    private string? _failure;

    public InProcessGroup(int worldSize, TimeSpan? timeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        WorldSize = worldSize;
        _timeout = timeout ?? TimeSpan.FromSeconds(30);
        _doubles = new double[worldSize][];
        _floats = new float[worldSize][];
        _headers = new (CollectiveKind, int, int)[worldSize];
        Members = [.. Enumerable.Range(0, worldSize).Select(r => new Member(this, r))];
    }

    public int WorldSize { get; }

    /// <summary>One handle per rank, to give to that rank's layers and training step.</summary>
    public IReadOnlyList<Member> Members { get; }

    public sealed class Member(InProcessGroup group, int rank) : ICollective, IGradientReducer, IProcessGroup, IFloatAllReduce
    {
        private IBackend? _backend;
        private FlatGradients? _flat;

        public int Rank => rank;

        public int WorldSize => group.WorldSize;

        public void AllReduceSum(Span<double> values, CollectiveKind kind, int layer) =>
            group.Reduce(rank, kind, layer, values, Span<float>.Empty);

        /// <summary>The process group of the in-process ranks (the step is not checked: the ranks share one loop).</summary>
        void IProcessGroup.AllReduce(Span<double> values, long step, CollectiveKind kind, int layer) => AllReduceSum(values, kind, layer);

        /// <summary>A float32 buffer summed over the ranks, in rank order from rank 0's values (the hub's order).</summary>
        public void AllReduce(float[] buffer, int length, long step) =>
            group.Reduce(rank, CollectiveKind.Gradients, -1, Span<double>.Empty, buffer.AsSpan(0, length));

        /// <summary>The backend whose tensors hold this rank's gradients.</summary>
        public Member WithBackend(IBackend backend)
        {
            _backend = backend;
            return this;
        }

        public void SumGradients(IReadOnlyList<Parameter> parameters)
        {
            var backend = _backend ?? throw new InvalidOperationException("call WithBackend before SumGradients");
            if (!ReferenceEquals(_flat?.Parameters, parameters)) _flat = new FlatGradients(backend, parameters);
            _flat.Gather();
            ((IFloatAllReduce)this).AllReduce(_flat.Values, step: 0);
            _flat.Scatter();
        }
    }

    private void Reduce(int rank, CollectiveKind kind, int layer, Span<double> doubles, Span<float> floats)
    {
        lock (_gate)
        {
            if (_failure is not null) throw new InvalidOperationException(_failure);
            long generation = _generation;
            _headers[rank] = (kind, layer, doubles.Length + floats.Length);
            _doubles[rank] = doubles.ToArray();
            _floats[rank] = floats.ToArray();
            if (++_arrived == WorldSize)
            {
                Complete(kind, layer, doubles.Length, floats.Length);
            }
            else
            {
                var deadline = DateTime.UtcNow + _timeout;
                while (_generation == generation && _failure is null)
                {
                    var left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero)
                    {
                        var missing = Enumerable.Range(0, WorldSize).Where(r => _doubles[r] is null && _floats[r] is null);
                        Fail($"{kind} layer {layer}: rank(s) {string.Join(", ", missing)} did not contribute within {_timeout.TotalSeconds:F0} s");
                        break;
                    }
                    Monitor.Wait(_gate, left);
                }
            }
            if (_failure is not null) throw new InvalidOperationException(_failure);
            _doubleResult.AsSpan(0, doubles.Length).CopyTo(doubles);
            _floatResult.AsSpan(0, floats.Length).CopyTo(floats);
        }
    }

    private void Complete(CollectiveKind kind, int layer, int doubleCount, int floatCount)
    {
        for (int r = 0; r < WorldSize; r++)
        {
            if (_headers[r] != _headers[0])
            {
                Fail($"rank {r} sent {_headers[r].Kind} layer {_headers[r].Layer} ({_headers[r].Length} values) " +
                     $"while rank 0 sent {kind} layer {layer} ({_headers[0].Length} values)");
                return;
            }
        }
        _doubleResult = new double[doubleCount];
        // Float sums start from rank 0's values, as the coordinator's hub does: ((f0 + f1) + f2) …
        _floatResult = (float[])_floats[0]!.Clone();
        for (int r = 0; r < WorldSize; r++)
        {
            var d = _doubles[r]!;
            for (int i = 0; i < doubleCount; i++) _doubleResult[i] += d[i];
            var f = _floats[r]!;
            if (r > 0)
                for (int i = 0; i < floatCount; i++) _floatResult[i] += f[i];
            _doubles[r] = null;
            _floats[r] = null;
        }
        _arrived = 0;
        _generation++;
        Monitor.PulseAll(_gate);
    }

    private void Fail(string reason)
    {
        _failure ??= reason;
        Monitor.PulseAll(_gate);
    }
}
