using System.Diagnostics;
using System.Runtime.InteropServices;
using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Collectives.SharedMemory;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using Google.Protobuf;
using Grpc.Core;

namespace BnDist.Worker;

/// <summary>
/// <see cref="ICollective"/> and <see cref="IGradientReducer"/> over this worker's one
/// long-lived Collective stream to the coordinator. Each call sends this rank's contribution
/// with its header (run, step, sequence, kind, layer, length) and blocks until the sum comes
/// back — with the same header, or the call fails. The training thread itself reads the
/// response stream (no reader task, no queue: one thread wake-up per answer, which is most of
/// a small all-reduce's latency). Every wait has a deadline; an abort from the coordinator, or
/// the loss of the stream, becomes a <see cref="ClusterException"/> carrying the reason. The Metrics collective of layer −1 is the step's commit: it also
/// carries the step's timing, brings back the next learning rate, and may ask rank 0 to upload
/// its state for a checkpoint.
/// </summary>
public sealed class GrpcCollective : ICollective, IGradientReducer, ITimedCollective, IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> _call;
    private CancellationTokenSource _deadline = new();
    private CancellationTokenSource _writeDeadline = new();
    private readonly string _runId;
    private readonly TimeSpan _wait;
    private readonly IBackend _backend;
    private long _sequence, _step, _stepStarted = Stopwatch.GetTimestamp();
    private double _statsAtStepStart, _gradientsAtStepStart;
    private float[] _flat = [];

    public GrpcCollective(Cluster.ClusterClient client, Metadata headers, string runId, int rank, int worldSize,
        TimeSpan operationTimeout, IBackend backend, CancellationToken cancellation, string coordinator = "the coordinator")
    {
        (_runId, Rank, WorldSize, _backend, _coordinator) = (runId, rank, worldSize, backend, coordinator);
        // The coordinator enforces the operation deadline and reports it, naming the rank that
        // is missing; this margin only covers a coordinator that stopped answering altogether
        // (stopped, or cut off), and is short so the worker is down soon after the deadline.
        _wait = operationTimeout + WaitMargin;
        _call = client.Collective(headers, cancellationToken: cancellation);
        Write(new WorkerMessage { Hello = new StreamHello { RunId = runId, Rank = rank } });
    }

    /// <summary>How much longer than the operation timeout a rank waits for the coordinator's answer (or for room to send).</summary>
    public static readonly TimeSpan WaitMargin = TimeSpan.FromSeconds(2);

    /// <summary>How long a rank whose gradient ring failed waits for the coordinator's reason before it reports its own.</summary>
    public static readonly TimeSpan VerdictWait = TimeSpan.FromSeconds(2);

    private readonly string _coordinator;

    public int Rank { get; }

    public int WorldSize { get; }

    /// <summary>The learning rate the coordinator gave for the next step.</summary>
    public double NextLearningRate { get; set; }

    /// <summary>Rank 0: the parameters and optimizer state after the given number of steps, as a checkpoint image.</summary>
    public Func<long, byte[]>? CaptureState { get; set; }

    /// <summary>Seconds spent in the BN exchanges (statistics and gradient sums) since the start.</summary>
    public double ExchangeSeconds { get; private set; }

    /// <summary>Seconds spent summing gradients since the start.</summary>
    public double GradientSeconds { get; private set; }

    /// <summary>The gradient ring between the workers, when the run has one; else gradients go through the coordinator.</summary>
    public TcpRing? Ring { get; set; }

    /// <summary>Checkpoints the coordinator reported as written (step, path).</summary>
    public List<(long Step, string Path)> SavedCheckpoints { get; } = [];

    public void BeginStep(long step)
    {
        _step = step;
        _buckets?.BeginStep(step);
        _stepStarted = Stopwatch.GetTimestamp();
        _statsAtStepStart = ExchangeSeconds;
        _gradientsAtStepStart = GradientSeconds;
    }

    /// <summary>
    /// BN statistics through the host's shared memory (<paramref name="group"/>: null for a host of
    /// one rank); with <paramref name="hierarchical"/>, the host leaders exchange the hosts' sums
    /// through the coordinator, on a sequence of their own. Set once, after the join.
    /// </summary>
    public void UseHostGroup(SharedMemoryGroup? group, bool hierarchical)
    {
        if (group is null && !hierarchical) throw new ArgumentException("a run on one host needs its shared-memory group");
        (_host, _hierarchical) = (group, hierarchical);
        _leader = group is null || group.LocalRank == 0;
        _exchange = ExchangeWithHosts;
    }

    private SharedMemoryGroup? _host;
    private bool _hierarchical, _leader;
    private HostExchange? _exchange;
    private long _statsSequence;
    private (CollectiveKind Kind, int Layer) _exchanging;
    // Rank 0 on one host: the step's global statistics by layer, sent with the commit (buffers reused).
    private readonly List<(int Layer, double[] Values)> _stepStatistics = [];
    private int _stepStatisticsCount;

    /// <summary>Whether BN statistics go through shared memory (the host group is set).</summary>
    public bool SharedMemoryStatistics => _exchange is not null;

    /// <summary>
    /// Whether gradients go through shared memory: every rank on this one host, and the coordinator
    /// gave no ring (--gradient-path ring; with hub they go through the coordinator).
    /// </summary>
    public bool SharedMemoryGradients => _host is not null && !_hierarchical && GradientsDirect;

    /// <summary>Whether gradients go directly between the workers (--gradient-path ring), set from the join.</summary>
    public bool GradientsDirect { get; set; }

    public void AllReduceSum(Span<double> values, CollectiveKind kind, int layer)
    {
        if (kind == CollectiveKind.Metrics && layer == -1)
        {
            Commit(values);
            return;
        }
        if (_exchange is not null && kind is CollectiveKind.BatchNormStats or CollectiveKind.BatchNormGradSums)
        {
            ReduceStatistics(values, kind, layer);
            return;
        }
        long t0 = Stopwatch.GetTimestamp();
        var header = Header(kind, layer, values.Length);
        var contribution = new Contribution { Header = header };
        foreach (double v in values) contribution.Values.Add(v);
        Write(new WorkerMessage { Contribution = contribution });
        var result = Expect(header, CoordinatorMessage.BodyOneofCase.Result).Result;
        if (result.Values.Count != values.Length)
            throw new ClusterException($"the coordinator answered {Describe(header)} with {result.Values.Count} values");
        for (int i = 0; i < values.Length; i++) values[i] = result.Values[i];
        if (kind is CollectiveKind.BatchNormStats or CollectiveKind.BatchNormGradSums)
            ExchangeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>The shared-memory path: within the host, and for a leader of several hosts, through the coordinator.</summary>
    private void ReduceStatistics(Span<double> values, CollectiveKind kind, int layer)
    {
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            _exchanging = (kind, layer);
            if (_host is null) ExchangeWithHosts(values); // a host of one rank: it is its own leader
            else _host.AllReduce(values, _step, kind, layer, _hierarchical, _hierarchical && _leader ? _exchange : null);
        }
        catch (CollectiveException e)
        {
            // Another rank of the host left, died or disagreed. The coordinator, which sees a
            // stream end, usually names the culprit better (its worker id) and is aborting the
            // run: its reason, if it comes within a short wait, is the one given. (The leader's
            // own exchange failing passes through as the ClusterException it threw.)
            throw CoordinatorsReasonFor(new ClusterException(e.Message, e));
        }
        if (!_hierarchical && Rank == 0 && kind == CollectiveKind.BatchNormStats) Record(layer, values);
        ExchangeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>The host leader's exchange: the host's sums to the coordinator, the global sums back (replacing them).</summary>
    private void ExchangeWithHosts(Span<double> hostSum)
    {
        var (kind, layer) = _exchanging;
        var header = new Protos.V1.OperationHeader
        {
            RunId = _runId, Step = _step, Sequence = _statsSequence++, Kind = (OperationKind)(int)kind, Layer = layer, Length = hostSum.Length,
        };
        var contribution = new Contribution { Header = header };
        foreach (double v in hostSum) contribution.Values.Add(v);
        Write(new WorkerMessage { Contribution = contribution });
        var result = Expect(header, CoordinatorMessage.BodyOneofCase.Result).Result;
        if (result.Values.Count != hostSum.Length)
            throw new ClusterException($"the coordinator answered {Describe(header)} with {result.Values.Count} values");
        for (int i = 0; i < hostSum.Length; i++) hostSum[i] = result.Values[i];
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

    /// <summary>
    /// Sums <paramref name="network"/>'s gradients in buckets of <paramref name="bucketBytes"/> that start
    /// while backward goes on (<see cref="BucketedGradientReducer"/>), where the data plane allows it:
    /// the host's shared memory or the TCP ring (gradients through the coordinator share its stream
    /// with the BN statistics, so they are summed after backward). False when it does not.
    /// </summary>
    public bool UseBuckets(Network network, int bucketBytes)
    {
        IFloatAllReduce? transport = SharedMemoryGradients ? _host : Ring is { } ring ? new RingTransport(ring) : null;
        if (transport is null || bucketBytes <= 0) return false;
        _buckets = new BucketedGradientReducer(_backend, network, transport, bucketBytes);
        _buckets.BeginStep(_step);
        return true;
    }

    private BucketedGradientReducer? _buckets;

    private sealed class RingTransport(TcpRing ring) : IFloatAllReduce
    {
        public void AllReduce(float[] buffer, int length, long step) => ring.AllReduce(buffer, length, step);
    }

    public void SumGradients(IReadOnlyList<Parameter> parameters)
    {
        long t0 = Stopwatch.GetTimestamp();
        if (_buckets is not null)
        {
            try
            {
                _buckets.SumGradients(parameters);
            }
            catch (ClusterException e) when (Ring?.LostNeighbour == true)
            {
                throw CoordinatorsReasonFor(e);
            }
            catch (CollectiveException e)
            {
                throw CoordinatorsReasonFor(new ClusterException(e.Message, e));
            }
            GradientSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
            return;
        }
        int total = parameters.Sum(p => p.Grad.Length);
        if (total == 0) return; // nothing to sum (and no operation: every rank has the same parameters)
        if (_flat.Length != total) _flat = new float[total];
        int at = 0;
        foreach (var p in parameters)
        {
            _backend.Download(p.Grad, _flat.AsSpan(at, p.Grad.Length));
            at += p.Grad.Length;
        }
        if (SharedMemoryGradients) SumInSharedMemory(total);
        else if (Ring is not null) SumOverRing(Ring, total);
        else SumThroughCoordinator(total);
        at = 0;
        foreach (var p in parameters)
        {
            _backend.Upload(_flat.AsSpan(at, p.Grad.Length), p.Grad);
            at += p.Grad.Length;
        }
        GradientSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>The shared-memory path (one host): failures as for the statistics.</summary>
    private void SumInSharedMemory(int total)
    {
        try
        {
            _host!.AllReduce(_flat.AsSpan(0, total), _step);
        }
        catch (CollectiveException e)
        {
            throw CoordinatorsReasonFor(new ClusterException(e.Message, e));
        }
    }

    /// <summary>
    /// The ring path. When the ring loses a neighbour, that rank has probably left the run, and
    /// the coordinator, which sees its stream end, names it better (with its worker id) and may
    /// already be aborting the run: its abort, if it comes within a short bounded wait, is the
    /// reason given, with the ring's failure as the inner exception.
    /// </summary>
    private void SumOverRing(TcpRing ring, int total)
    {
        try
        {
            ring.AllReduce(_flat, total, _step);
        }
        catch (ClusterException e) when (ring.LostNeighbour)
        {
            throw CoordinatorsReasonFor(e);
        }
    }

    /// <summary>
    /// The coordinator's abort if one arrives within <paramref name="wait"/> (notices on the way
    /// are handled), or the loss of the coordinator if the stream breaks meanwhile (then the
    /// ring's failure is its consequence); else null.
    /// </summary>
    private ClusterException? AbortWithin(TimeSpan wait, ClusterException cause)
    {
        // The run is over for this rank either way: cancelling the read may end the call.
        using var limit = new CancellationTokenSource(wait);
        try
        {
            while (_call.ResponseStream.MoveNext(limit.Token).GetAwaiter().GetResult())
            {
                var message = _call.ResponseStream.Current;
                if (message.BodyCase == CoordinatorMessage.BodyOneofCase.Abort)
                    return new ClusterException($"the coordinator aborted the run: {message.Abort.Reason}", cause);
                if (message.BodyCase != CoordinatorMessage.BodyOneofCase.Saved) return null;
                SavedCheckpoints.Add((message.Saved.Step, message.Saved.Path));
            }
        }
        catch (Exception e) when (limit.IsCancellationRequested && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            // no abort in time: the ring's failure is the reason
        }
        catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
        {
            return new ClusterException($"{Lost(e).Message} ({cause.Message})", cause);
        }
        return null;
    }

    /// <summary>The hub path: this rank's gradients to the coordinator in chunks; the sum back in chunks.</summary>
    private void SumThroughCoordinator(int total)
    {
        var header = Header(CollectiveKind.Gradients, -1, total);
        for (int offset = 0; offset < total; offset += WireLimits.FloatChunk)
        {
            int count = Math.Min(WireLimits.FloatChunk, total - offset);
            // Wrapped, not copied: the write serializes the chunk before it returns.
            Write(new WorkerMessage { Contribution = new Contribution { Header = header, Floats = FloatBytes.Wrap(_flat, offset, count), Offset = offset } });
        }
        for (int received = 0; received < total;)
        {
            var chunk = Expect(header, CoordinatorMessage.BodyOneofCase.Result).Result;
            int count = chunk.Floats.Length / sizeof(float);
            if (chunk.Offset != received || count == 0 || received + count > total)
                throw new ClusterException($"the coordinator sent a malformed chunk of {Describe(header)} at value {chunk.Offset}");
            MemoryMarshal.Cast<byte, float>(chunk.Floats.Span).CopyTo(_flat.AsSpan(received, count));
            received += count;
        }
    }

    /// <summary>
    /// The reason to report for a failure seen outside the stream (the gradient ring broke, or
    /// did not form): a neighbour that died or stalled is usually the coordinator's verdict
    /// too, which names the rank (the coordinator sees its stream end, or its keep-alive pings
    /// go unanswered). So wait briefly for it (<see cref="AbortWithin"/>); else
    /// <paramref name="failure"/> itself. Without this, the first rank to give up would close its
    /// stream and be blamed for the failure.
    /// </summary>
    public ClusterException CoordinatorsReasonFor(ClusterException failure) => AbortWithin(VerdictWait, failure) ?? failure;

    /// <summary>Ends this rank's stream and waits for the coordinator to close the run.</summary>
    public async Task CompleteAsync()
    {
        _host?.Complete(); // its last operation is done: leaving the segment no longer fails the others
        try
        {
            await _call.RequestStream.CompleteAsync().WaitAsync(_wait);
        }
        catch (TimeoutException)
        {
            throw new ClusterException($"rank {Rank}: could not close its stream to the coordinator at {_coordinator} within {_wait.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException)
        {
            throw Lost(e);
        }
        while (await Task.Run(() => Next($"the close of the run after rank {Rank}'s last step")) is { } message)
            Handle(message, expected: null);
    }

    public ValueTask DisposeAsync()
    {
        // The stream first: the coordinator then hears of this rank's end before the others of
        // its host find the segment failed (and it names this rank, not one of them).
        _call.Dispose();
        // Wake this rank's bucket thread if it waits in a sum (the segment failed, the ring closed), join it, then unmap.
        _host?.Leave();
        Ring?.Dispose();
        _buckets?.Dispose();
        _host?.Dispose();
        _deadline.Dispose();
        _writeDeadline.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Commit(Span<double> metrics)
    {
        long committedStep = _step;
        var header = Header(CollectiveKind.Metrics, -1, metrics.Length);
        double stats = ExchangeSeconds - _statsAtStepStart, gradients = GradientSeconds - _gradientsAtStepStart;
        double wall = Stopwatch.GetElapsedTime(_stepStarted).TotalSeconds;
        var commit = new StepCommit
        {
            Header = header,
            Timing = new Protos.V1.StepTiming { ComputeS = wall - stats - gradients, StatsExchangeS = stats, GradientExchangeS = gradients },
        };
        foreach (double v in metrics) commit.Metrics.Add(v);
        for (int i = 0; i < _stepStatisticsCount; i++)
        {
            var statistics = new LayerStatistics { Layer = _stepStatistics[i].Layer };
            statistics.Values.Add(_stepStatistics[i].Values);
            commit.Statistics.Add(statistics);
        }
        _stepStatisticsCount = 0;
        Write(new WorkerMessage { Commit = commit });
        var reply = Expect(header, CoordinatorMessage.BodyOneofCase.Committed).Committed;
        for (int i = 0; i < metrics.Length; i++) metrics[i] = reply.Metrics[i];
        NextLearningRate = reply.NextLearningRate;
        if (reply.UploadState) Upload(committedStep + 1);
    }

    private void Upload(long steps)
    {
        var capture = CaptureState ?? throw new ClusterException($"the coordinator asked rank {Rank} for its state, which only rank 0 uploads");
        byte[] image = capture(steps);
        for (int offset = 0; offset < image.Length || offset == 0; offset += WireLimits.StateChunkBytes)
        {
            int count = Math.Min(WireLimits.StateChunkBytes, image.Length - offset);
            bool last = offset + count >= image.Length;
            Write(new WorkerMessage { State = new StateChunk { Step = steps, Data = ByteString.CopyFrom(image, offset, count), Last = last } });
            if (last) break;
        }
    }

    private Protos.V1.OperationHeader Header(CollectiveKind kind, int layer, int length) => new()
    {
        RunId = _runId,
        Step = _step,
        Sequence = _sequence++,
        Kind = (OperationKind)(int)kind,
        Layer = layer,
        Length = length,
    };

    /// <summary>Sends a message; waits at most the deadline for HTTP/2 flow control to make room (a coordinator that stopped reading).</summary>
    private void Write(WorkerMessage message)
    {
        _writeDeadline.CancelAfter(_wait);
        try
        {
            _call.RequestStream.WriteAsync(message, _writeDeadline.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (_writeDeadline.IsCancellationRequested && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            throw new ClusterException($"rank {Rank}: the coordinator at {_coordinator} took nothing sent to it for {_wait.TotalSeconds:0.#} s " +
                                       $"(its stream stayed full while sending {message.BodyCase})");
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            throw Lost(e);
        }
        finally
        {
            if (!_writeDeadline.TryReset())
            {
                _writeDeadline.Dispose();
                _writeDeadline = new CancellationTokenSource();
            }
        }
    }

    /// <summary>Waits for the answer to <paramref name="header"/>, handling notices and aborts on the way.</summary>
    private CoordinatorMessage Expect(Protos.V1.OperationHeader header, CoordinatorMessage.BodyOneofCase body)
    {
        while (true)
        {
            var message = Next(Describe(header)) ?? throw new ClusterException($"rank {Rank}: the coordinator ended the stream before answering {Describe(header)}");
            if (Handle(message, (header, body)) is { } answer) return answer;
        }
    }

    /// <summary>The coordinator's next message on this thread, or null at the end of the stream; waits at most the deadline.</summary>
    private CoordinatorMessage? Next(string awaiting)
    {
        _deadline.CancelAfter(_wait);
        try
        {
            return _call.ResponseStream.MoveNext(_deadline.Token).GetAwaiter().GetResult() ? _call.ResponseStream.Current : null;
        }
        catch (Exception e) when (_deadline.IsCancellationRequested && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            throw new ClusterException($"rank {Rank}: no answer from the coordinator at {_coordinator} to {awaiting} within {_wait.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
        {
            throw Lost(e);
        }
        finally
        {
            // A timer that fired after the answer came cannot be reset: start a fresh source.
            if (!_deadline.TryReset())
            {
                _deadline.Dispose();
                _deadline = new CancellationTokenSource();
            }
        }
    }

    private CoordinatorMessage? Handle(CoordinatorMessage message, (Protos.V1.OperationHeader Header, CoordinatorMessage.BodyOneofCase Body)? expected)
    {
        switch (message.BodyCase)
        {
            case CoordinatorMessage.BodyOneofCase.Abort:
                throw new ClusterException($"the coordinator aborted the run: {message.Abort.Reason}");
            case CoordinatorMessage.BodyOneofCase.Saved:
                SavedCheckpoints.Add((message.Saved.Step, message.Saved.Path));
                return null;
        }
        if (expected is not { } e)
            throw new ClusterException($"rank {Rank} received {message.BodyCase} after its last step");
        var header = message.BodyCase switch
        {
            CoordinatorMessage.BodyOneofCase.Result => message.Result.Header,
            CoordinatorMessage.BodyOneofCase.Committed => message.Committed.Header,
            _ => null,
        };
        if (message.BodyCase != e.Body || header is null || !header.Equals(e.Header))
            throw new ClusterException($"rank {Rank} expected the answer to {Describe(e.Header)} but received {message.BodyCase} " +
                                       $"for {(header is null ? "nothing" : Describe(header))}");
        return message;
    }

    private ClusterException Lost(Exception e) => e switch
    {
        RpcException { StatusCode: StatusCode.Unauthenticated } r => new ClusterException($"the coordinator refused rank {Rank}: {r.Status.Detail}", e),
        RpcException r => new ClusterException($"rank {Rank} lost the coordinator at {_coordinator}: {r.Status.StatusCode} {r.Status.Detail}", e),
        _ => new ClusterException($"rank {Rank} lost the coordinator at {_coordinator}: {e.Message}", e),
    };

    private static string Describe(Protos.V1.OperationHeader h) =>
        $"step {h.Step} {h.Kind}{(h.Layer >= 0 ? $" layer {h.Layer}" : "")} (operation #{h.Sequence})";
}
