using System.Diagnostics;
using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Collectives.SharedMemory;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Training;
using Grpc.Core;

namespace BnDist.Worker;

/// <summary>
/// What the layers and the training loop of a worker see (<see cref="ICollective"/>,
/// <see cref="IGradientReducer"/>): a facade that routes each reduction to its process group and
/// the rest to the control channel.
/// <list type="bullet">
/// <item>BN statistics and BN gradient sums: the statistics group, chosen at join — the
///   coordinator (<see cref="CoordinatorGroup"/>, a flat run), the host's shared memory
///   (<see cref="SharedMemoryGroup"/>, every rank on one host: rank 0 then keeps each step's
///   statistics for the commit, from which the coordinator updates its running averages), or
///   both composed (<see cref="HierarchicalGroup"/>, several hosts).</item>
/// <item>Gradients: buckets overlapped with backward (<see cref="BucketedGradientReducer"/>) over
///   the host's shared memory or the TCP ring; through the coordinator's hub after backward.</item>
/// <item>Metrics of layer −1, the step's commit: the control channel (timing, next learning rate,
///   checkpoint upload); evaluation metrics: the coordinator.</item>
/// </list>
/// A failure seen outside the stream (the ring, the host's segment) is reported as the
/// coordinator's verdict when it comes within a short wait, as it names the rank that left.
/// </summary>
public sealed class WorkerCollective : ICollective, IGradientReducer, ITimedCollective, IAsyncDisposable
{
    private readonly CoordinatorStream _stream;
    private readonly CoordinatorGroup _coordinator;
    private readonly ControlChannel _control;
    private readonly IBackend _backend;
    private IProcessGroup _statistics;
    private SharedMemoryGroup? _host;
    private bool _recordStatistics, _gradientsInSharedMemory;
    private BucketedGradientReducer? _buckets;
    private IFloatAllReduce? _gradientPath;
    private long _step, _stepStarted = Stopwatch.GetTimestamp();
    private double _statsAtStepStart, _gradientsAtStepStart;
    private FlatGradients? _flat; // the gradients summed after backward (without buckets), for the parameter list of the last call
    // Rank 0 on one host: the step's global statistics by layer, sent with the commit (buffers reused).
    private readonly List<(int Layer, double[] Values)> _stepStatistics = [];
    private int _stepStatisticsCount;

    public WorkerCollective(Protos.V1.Cluster.ClusterClient client, Metadata headers, string runId, int rank, int worldSize,
        TimeSpan operationTimeout, IBackend backend, CancellationToken cancellation, string coordinator = "the coordinator")
        : this(new CoordinatorStream(client, headers, runId, rank, operationTimeout, cancellation, coordinator), worldSize, backend)
    {
    }

    private WorkerCollective(CoordinatorStream stream, int worldSize, IBackend backend)
    {
        (_stream, WorldSize, _backend) = (stream, worldSize, backend);
        _coordinator = new CoordinatorGroup(stream);
        _control = new ControlChannel(stream);
        _statistics = _coordinator;
    }

    public int Rank => _stream.Rank;

    public int WorldSize { get; }

    /// <summary>The learning rate the coordinator gave for the next step.</summary>
    public double NextLearningRate { get; set; }

    /// <summary>Rank 0: the parameters and optimizer state after the given number of steps, as a checkpoint image.</summary>
    public Func<long, byte[]>? CaptureState { get; set; }

    /// <summary>Seconds spent in the BN exchanges (statistics and gradient sums) since the start.</summary>
    public double ExchangeSeconds { get; private set; }

    /// <summary>Seconds spent summing gradients (with buckets: waiting for them after backward) since the start.</summary>
    public double GradientSeconds { get; private set; }

    /// <summary>The gradient ring between the workers, when the run has one.</summary>
    public TcpRing? Ring { get; set; }

    /// <summary>Checkpoints the coordinator reported as written (step, path).</summary>
    public List<(long Step, string Path)> SavedCheckpoints => _stream.SavedCheckpoints;

    /// <summary>Whether BN statistics go through the host's shared memory.</summary>
    public bool SharedMemoryStatistics => _statistics is not CoordinatorGroup;

    /// <summary>Whether gradients go through the host's shared memory (--gradient-path ring; on several hosts, then around the leaders' ring).</summary>
    public bool SharedMemoryGradients => _gradientsInSharedMemory;

    /// <summary>
    /// The shared-memory transports the join gave this rank: <paramref name="host"/> (null for a host
    /// of one rank), with <paramref name="hierarchical"/> when the run has several hosts (then the
    /// host's leader exchanges the host's sums through the coordinator, on a sequence of its own), and
    /// whether gradients are summed in the segment too. Set once, after the join.
    /// </summary>
    public void UseSharedMemory(SharedMemoryGroup? host, bool hierarchical, bool gradients)
    {
        if (host is null && !hierarchical) throw new ArgumentException("a run on one host needs its shared-memory group");
        _host = host;
        _statistics = hierarchical
            ? new HierarchicalGroup(host, host is null || host.LocalRank == 0 ? new CoordinatorGroup(_stream, ownSequence: true) : null)
            : host!;
        _recordStatistics = !hierarchical && Rank == 0;
        _gradientsInSharedMemory = gradients && host is not null;
        _hierarchical = hierarchical;
    }

    private bool _hierarchical;

    /// <summary>
    /// Where gradients are summed: the host's shared memory (then, on several hosts, the leaders'
    /// ring), the TCP ring of all ranks, or the coordinator's hub. A host's leader hands the ring its
    /// host's sum chunk by chunk, so the leader of a host of one rank does too.
    /// </summary>
    private IFloatAllReduce GradientPath() =>
        _gradientsInSharedMemory
            ? _hierarchical ? new HostThenLeaders(_host!, _host!.LocalRank == 0 ? Ring ?? throw NoRing() : null) : _host!
            : _hierarchical && _host is null && Ring is { } leaders ? new InChunks(leaders, SharedMemoryGroup.ChunkFloats)
            : Ring is { } ring ? ring : _coordinator;

    private ClusterException NoRing() => new($"rank {Rank} leads its host but has no ring to the other hosts' leaders");

    /// <summary>Sums through <paramref name="inner"/> in chunks of <paramref name="chunk"/> values: the leaders' ring as a host's leader uses it.</summary>
    private sealed class InChunks(IFloatAllReduce inner, int chunk) : IFloatAllReduce
    {
        private readonly float[] _buffer = new float[chunk];

        public void AllReduce(float[] buffer, int length, long step) => AllReduce(new FloatSegments(buffer.AsMemory(0, length)), step);

        public void AllReduce(FloatSegments values, long step)
        {
            for (int offset = 0; offset < values.Length; offset += chunk)
            {
                int n = Math.Min(chunk, values.Length - offset);
                values.CopyTo(offset, _buffer.AsSpan(0, n));
                inner.AllReduce(_buffer, n, step);
                values.CopyFrom(_buffer.AsSpan(0, n), offset);
            }
        }
    }

    /// <summary>The host's sum in its shared memory, the hosts' sums around the leaders' ring.</summary>
    private sealed class HostThenLeaders(SharedMemoryGroup host, IFloatAllReduce? leaders) : IFloatAllReduce
    {
        public void AllReduce(float[] buffer, int length, long step) => host.AllReduce(new FloatSegments(buffer.AsMemory(0, length)), step, hierarchical: true, leaders);

        public void AllReduce(FloatSegments values, long step) => host.AllReduce(values, step, hierarchical: true, leaders);
    }

    /// <summary>
    /// Sums <paramref name="network"/>'s gradients in buckets of <paramref name="bucketBytes"/> that start
    /// while backward goes on, where the data plane allows it: the host's shared memory or the TCP
    /// ring (gradients through the coordinator share its stream with the BN statistics, so they are
    /// summed after backward). False when it does not.
    /// </summary>
    public bool UseBuckets(Network network, int bucketBytes)
    {
        var path = GradientPath();
        if (path is CoordinatorGroup || bucketBytes <= 0) return false;
        _gradientPath = path;
        _buckets = new BucketedGradientReducer(_backend, network, path, bucketBytes);
        _buckets.BeginStep(_step);
        return true;
    }

    public void BeginStep(long step)
    {
        _step = step;
        _buckets?.BeginStep(step);
        _stepStarted = Stopwatch.GetTimestamp();
        _statsAtStepStart = ExchangeSeconds;
        _gradientsAtStepStart = GradientSeconds;
    }

    public void AllReduceSum(Span<double> values, CollectiveKind kind, int layer)
    {
        if (kind == CollectiveKind.Metrics && layer == -1)
        {
            Commit(values);
            return;
        }
        if (kind is not (CollectiveKind.BatchNormStats or CollectiveKind.BatchNormGradSums))
        {
            _coordinator.AllReduce(values, _step, kind, layer);
            return;
        }
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            _statistics.AllReduce(values, _step, kind, layer);
        }
        catch (CollectiveException e)
        {
            // Another rank of the host left, died or disagreed. (A leader's own exchange with the
            // coordinator failing passes through as the ClusterException it threw.)
            throw _stream.VerdictFor(new ClusterException(e.Message, e));
        }
        if (_recordStatistics && kind == CollectiveKind.BatchNormStats) Record(layer, values);
        ExchangeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Keeps a layer's statistics for the commit: the last of the step, if a layer reduced twice (the collective benchmark does).</summary>
    private void Record(int layer, ReadOnlySpan<double> values)
    {
        int at = 0;
        while (at < _stepStatisticsCount && _stepStatistics[at].Layer != layer) at++;
        if (at == _stepStatistics.Count) _stepStatistics.Add((layer, values.ToArray()));
        var buffer = _stepStatistics[at].Values;
        if (buffer.Length != values.Length) buffer = values.ToArray();
        else values.CopyTo(buffer);
        _stepStatistics[at] = (layer, buffer);
        if (at == _stepStatisticsCount) _stepStatisticsCount++;
    }

    public void SumGradients(IReadOnlyList<Parameter> parameters)
    {
        if (WorldSize == 1) return; // the sum over one rank is its own gradients: nothing crosses the wire
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            if (_buckets is not null)
            {
                _buckets.SumGradients(parameters);
            }
            else
            {
                if (!ReferenceEquals(_flat?.Parameters, parameters)) _flat = new FlatGradients(_backend, parameters);
                if (_flat.Values.Length == 0) return; // nothing to sum (and no operation: every rank has the same parameters)
                _flat.Gather();
                (_gradientPath ??= GradientPath()).AllReduce(_flat.Values, _step);
                _flat.Scatter();
            }
        }
        catch (ClusterException e) when (Ring?.LostNeighbour == true)
        {
            // The ring lost a neighbour, which has probably left the run: the coordinator names it better.
            throw _stream.VerdictFor(e);
        }
        catch (CollectiveException e)
        {
            throw _stream.VerdictFor(new ClusterException(e.Message, e));
        }
        GradientSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>The coordinator's verdict on <paramref name="failure"/>, when it comes within a short wait (<see cref="CoordinatorStream.VerdictFor"/>).</summary>
    public ClusterException VerdictFor(ClusterException failure) => _stream.VerdictFor(failure);

    /// <summary>Ends this rank's stream and waits for the coordinator to close the run.</summary>
    public Task CompleteAsync()
    {
        _host?.Complete(); // its last operation is done: leaving the segment no longer fails the others
        return _stream.CompleteAsync();
    }

    public ValueTask DisposeAsync()
    {
        // The stream first: the coordinator then hears of this rank's end before the others of
        // its host find the segment failed (and it names this rank, not one of them).
        _stream.Dispose();
        // Wake this rank's bucket thread if it waits in a sum (the segment failed, the ring closed), join it, then unmap.
        _host?.Leave();
        Ring?.Dispose();
        _buckets?.Dispose();
        _host?.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Commit(Span<double> metrics)
    {
        long committedStep = _step;
        double stats = ExchangeSeconds - _statsAtStepStart, gradients = GradientSeconds - _gradientsAtStepStart;
        double wall = Stopwatch.GetElapsedTime(_stepStarted).TotalSeconds;
        var outcome = _control.Commit(committedStep, metrics, wall - stats - gradients, stats, gradients, _stepStatistics, _stepStatisticsCount);
        _stepStatisticsCount = 0;
        NextLearningRate = outcome.NextLearningRate;
        if (!outcome.UploadState) return;
        var capture = CaptureState ?? throw new ClusterException($"the coordinator asked rank {Rank} for its state, which only rank 0 uploads");
        _control.Upload(committedStep + 1, capture(committedStep + 1));
    }
}
