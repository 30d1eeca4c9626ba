using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Protos;
using BnDist.Protos.V1;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using ModelLayout = BnDist.Core.Models.ModelLayout;
using OperationHeader = BnDist.Coordinator.OperationHeader;

namespace BnDist.Coordinator;

/// <summary>
/// The gRPC face of <see cref="RunCoordinator"/>: translates protobuf to plain records and
/// back, nothing more. Each worker's Collective stream is an <c>await foreach</c> over its
/// requests plus a writer loop over its outbox, cleaned up in <c>finally</c>.
/// </summary>
public sealed class ClusterService(RunCoordinator run, ILogger<ClusterService> logger) : Cluster.ClusterBase
{
    public override async Task<JoinReply> Join(JoinRequest request, ServerCallContext context)
    {
        if (string.IsNullOrWhiteSpace(request.WorkerId)) throw Invalid("join: worker_id is empty");
        var d = request.Dataset ?? throw Invalid($"join: worker '{request.WorkerId}' sent no dataset fingerprint");
        var ticket = new JoinTicket(request.WorkerId, request.Device, request.ProtocolVersion, d.TrainCount, d.TestCount, d.TrainLabelsHash,
            request.DataEndpoint, request.Host);
        JoinResult joined;
        try
        {
            joined = await run.JoinAsync(ticket, context.CancellationToken);
        }
        catch (RunAbortedException e)
        {
            throw new RpcException(new Status(StatusCode.Aborted, e.Message));
        }
        catch (JoinRefusedException e)
        {
            var code = e.Reason switch
            {
                JoinRefusal.DuplicateId => StatusCode.AlreadyExists,
                JoinRefusal.Timeout => StatusCode.DeadlineExceeded,
                _ => StatusCode.FailedPrecondition,
            };
            throw new RpcException(new Status(code, e.Message));
        }
        var reply = new JoinReply
        {
            RunId = joined.RunId,
            Rank = joined.Rank,
            WorldSize = joined.WorldSize,
            ConfigJson = joined.ConfigJson,
            StartStep = joined.StartStep,
            LearningRate = joined.LearningRate,
            OperationTimeoutMs = (int)joined.OperationTimeout.TotalMilliseconds,
            RingEndpoints = { joined.RingEndpoints },
        };
        if (joined.HostGroup is { } group)
            reply.HostGroup = new Protos.V1.HostGroup { Segment = group.Segment, Ranks = { group.Ranks }, Host = group.Host, Hosts = group.Hosts, Gradients = group.Gradients,
                Leaders = { group.Leaders ?? [] } };
        return reply;
    }

    public override async Task<PrepareReply> Prepare(PrepareRequest request, ServerCallContext context)
    {
        if (request.RunId != run.RunId) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"prepare: run {request.RunId} is not this coordinator's run {run.RunId}"));
        if (request.Rank < 0 || request.Rank >= run.Settings.Workers) throw Invalid($"prepare: rank {request.Rank} is outside the world of {run.Settings.Workers}");
        if (request.Model is null) throw Invalid($"prepare: rank {request.Rank} sent no model layout");
        ModelLayout layout;
        try
        {
            layout = LayoutOf(request.Model);
        }
        catch (ArgumentException e)
        {
            run.Abort($"rank {request.Rank} sent a malformed model layout: {e.Message}");
            throw Invalid($"prepare: {e.Message}");
        }
        try
        {
            byte[] initial = await run.PrepareAsync(request.Rank, layout, request.State.IsEmpty ? null : request.State.ToByteArray(), context.CancellationToken);
            return new PrepareReply { InitialState = UnsafeByteOperations.UnsafeWrap(initial) };
        }
        catch (RunAbortedException e)
        {
            throw new RpcException(new Status(StatusCode.Aborted, e.Message));
        }
    }

    /// <summary>The layout a worker described; ArgumentException for a value no model can have.</summary>
    private static ModelLayout LayoutOf(Protos.V1.ModelLayout wire) => new(
        wire.Architecture,
        wire.Normalization,
        [.. wire.Tensors.Select(t => new Core.Models.TensorSpec(t.Name, DTypeOf(t), [.. t.Shape], t.Parameter))],
        [.. wire.BatchNorms.Select(b => new Core.Models.BatchNormSpec(b.Layer, b.Name, b.Channels, b.Cumulative ? null : b.Momentum))]);

    private static SafeDType DTypeOf(Protos.V1.TensorSpec t) =>
        SafeDTypeExtensions.TryParse(t.Dtype, out var dtype) ? dtype : throw new ArgumentException($"tensor {t.Name} has dtype '{t.Dtype}'");

    public override async Task Collective(IAsyncStreamReader<WorkerMessage> requests, IServerStreamWriter<CoordinatorMessage> responses,
        ServerCallContext context)
    {
        if (!await requests.MoveNext(context.CancellationToken) || requests.Current.Hello is not { } hello)
            throw Invalid("collective: the first message must be a hello with the run id and rank");
        if (hello.RunId != run.RunId) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"collective: run {hello.RunId} is not this coordinator's run {run.RunId}"));
        int rank = hello.Rank;
        if (rank < 0 || rank >= run.Settings.Workers) throw Invalid($"collective: rank {rank} is outside the world of {run.Settings.Workers}");
        if (run.ClaimStream(rank) is { } refusal) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"collective: {refusal}"));

        // Reads and writes end with the call, or a moment after the run has failed: a rank that
        // stalled or whose link is cut never ends its stream itself, and an open call holds up
        // the host's shutdown.
        using var open = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, run.StreamsClosing);
        var writer = WriteOutbox(rank, responses, open.Token);
        string? error = null;
        try
        {
            await foreach (var message in requests.ReadAllAsync(open.Token))
            {
                if (!Dispatch(rank, message)) break;
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or RpcException or InvalidOperationException)
        {
            error = e.Message;
        }
        finally
        {
            run.StreamEnded(rank, error);
        }
        await writer;
        // Closed by the run, not by the worker (stopped, or cut off, it will neither end its side
        // nor answer the connection's close): drop its connection, else the host waits for it
        // until its shutdown timeout.
        if (run.StreamsClosing.IsCancellationRequested)
        {
            var http = context.GetHttpContext();
            if (http.Features.Get<IConnectionLifetimeFeature>() is { } connection) connection.Abort();
            else http.Abort();
        }
    }

    public override Task<RunState> GetRunState(RunStateRequest request, ServerCallContext context) =>
        Task.FromResult(new RunState
        {
            RunId = run.RunId,
            CommittedSteps = run.CommittedSteps,
            RunningStatistics = UnsafeByteOperations.UnsafeWrap(run.RunningStatisticsImage()),
            LatestCheckpoint = run.LatestCheckpoint ?? "",
            LatestCheckpointStep = run.LatestCheckpointStep,
        });

    /// <summary>Hands one message to the run; false (after aborting it) when the message is malformed.</summary>
    private bool Dispatch(int rank, WorkerMessage message)
    {
        switch (message.BodyCase)
        {
            case WorkerMessage.BodyOneofCase.Contribution:
                var c = message.Contribution;
                if (!TryHeader(rank, c.Header, out var h)) return false;
                if (h.Kind == CollectiveKind.Gradients) run.ContributeChunk(rank, h, c.Offset, c.Floats.Span);
                else run.Contribute(rank, h, [.. c.Values]);
                return true;
            case WorkerMessage.BodyOneofCase.Commit:
                var m = message.Commit;
                if (!TryHeader(rank, m.Header, out var ch)) return false;
                var t = m.Timing ?? new Protos.V1.StepTiming();
                run.Commit(rank, ch, [.. m.Metrics], new StepTiming(t.ComputeS, t.StatsExchangeS, t.GradientExchangeS),
                    m.Statistics.Count == 0 ? null : [.. m.Statistics.Select(l => (l.Layer, l.Values.ToArray()))]);
                return true;
            case WorkerMessage.BodyOneofCase.State:
                run.UploadChunk(rank, message.State.Step, message.State.Data.Span, message.State.Last);
                return true;
            default:
                run.Abort($"rank {rank} sent a malformed message ({message.BodyCase}) on its collective stream");
                return false;
        }
    }

    private bool TryHeader(int rank, Protos.V1.OperationHeader? header, out OperationHeader result)
    {
        result = default;
        if (header is null || header.RunId != run.RunId || !Enum.IsDefined(typeof(CollectiveKind), (int)header.Kind) || header.Length < 0)
        {
            run.Abort($"rank {rank} sent a malformed operation header ({header?.ToString() ?? "none"})");
            return false;
        }
        result = new OperationHeader(header.Step, header.Sequence, (CollectiveKind)(int)header.Kind, header.Layer, header.Length);
        return true;
    }

    private async Task WriteOutbox(int rank, IServerStreamWriter<CoordinatorMessage> responses, CancellationToken cancellation)
    {
        try
        {
            await foreach (var message in run.Outbox(rank).ReadAllAsync(cancellation))
            {
                foreach (var wire in ToWire(message)) await responses.WriteAsync(wire, cancellation);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or InvalidOperationException)
        {
            logger.LogDebug("Stream to rank {Rank} closed: {Error}", rank, e.Message);
        }
    }

    private IEnumerable<CoordinatorMessage> ToWire(RankMessage message)
    {
        switch (message)
        {
            case SumMessage s:
                var result = new Result { Header = Wire(s.Header) };
                result.Values.AddRange(s.Values);
                yield return new CoordinatorMessage { Result = result };
                break;
            case FloatSumMessage f:
                // The range is final and never written again: send it without copying.
                for (int offset = f.Offset; offset < f.Offset + f.Count; offset += WireLimits.FloatChunk)
                {
                    int count = Math.Min(WireLimits.FloatChunk, f.Offset + f.Count - offset);
                    var bytes = FloatBytes.Wrap(f.Values, offset, count);
                    yield return new CoordinatorMessage { Result = new Result { Header = Wire(f.Header), Floats = bytes, Offset = offset } };
                }
                break;
            case CommitMessage c:
                var reply = new CommitReply { Header = Wire(c.Header), NextLearningRate = c.NextLearningRate, UploadState = c.UploadState };
                reply.Metrics.AddRange(c.Metrics);
                yield return new CoordinatorMessage { Committed = reply };
                break;
            case CheckpointSavedMessage saved:
                yield return new CoordinatorMessage { Saved = new CheckpointSaved { Step = saved.Step, Path = saved.Path } };
                break;
            case AbortMessage abort:
                yield return new CoordinatorMessage { Abort = new Abort { Reason = abort.Reason } };
                break;
        }
    }

    private Protos.V1.OperationHeader Wire(OperationHeader h) => new()
    {
        RunId = run.RunId,
        Step = h.Step,
        Sequence = h.Sequence,
        Kind = (OperationKind)(int)h.Kind,
        Layer = h.Layer,
        Length = h.Length,
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
