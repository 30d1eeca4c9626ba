using BnDist.Core.Collectives;
using BnDist.Protos.V1;
using Grpc.Core;

namespace BnDist.Worker;

/// <summary>
/// This worker's one long-lived Collective stream to the coordinator: sending with a deadline,
/// awaiting the answer to an operation (handling checkpoint notices and aborts on the way),
/// the coordinator's verdict on a failure seen elsewhere, and the close. The training thread
/// reads the response stream itself (no reader task, no queue: one thread wake-up per answer,
/// which is most of a small all-reduce's latency). Every wait has a deadline; an abort from the
/// coordinator, or the loss of the stream, becomes a <see cref="ClusterException"/> carrying the
/// reason. The generated protobuf types stay in this class and the two that speak through it
/// (<see cref="CoordinatorGroup"/>, <see cref="ControlChannel"/>).
/// </summary>
public sealed class CoordinatorStream : IDisposable
{
    private readonly AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> _call;
    private CancellationTokenSource _deadline = new();
    private CancellationTokenSource _writeDeadline = new();
    private readonly TimeSpan _wait;
    private readonly string _coordinator;
    private long _sequence;

    public CoordinatorStream(Cluster.ClusterClient client, Metadata headers, string runId, int rank, TimeSpan operationTimeout,
        CancellationToken cancellation, string coordinator = "the coordinator")
    {
        (RunId, Rank, _coordinator) = (runId, rank, coordinator);
        // The coordinator enforces the operation deadline and reports it, naming the rank that
        // is missing; this margin only covers a coordinator that stopped answering altogether
        // (stopped, or cut off), and is short so the worker is down soon after the deadline.
        _wait = operationTimeout + WaitMargin;
        _call = client.Collective(headers, cancellationToken: cancellation);
        Send(new WorkerMessage { Hello = new StreamHello { RunId = runId, Rank = rank } });
    }

    /// <summary>How much longer than the operation timeout a rank waits for the coordinator's answer (or for room to send).</summary>
    public static readonly TimeSpan WaitMargin = TimeSpan.FromSeconds(2);

    /// <summary>How long a rank that saw a failure elsewhere (the ring, the host's segment) waits for the coordinator's reason before it reports its own.</summary>
    public static readonly TimeSpan VerdictWait = TimeSpan.FromSeconds(2);

    public string RunId { get; }

    public int Rank { get; }

    /// <summary>Checkpoints the coordinator reported as written (step, path).</summary>
    public List<(long Step, string Path)> SavedCheckpoints { get; } = [];

    /// <summary>
    /// The next number of the coordinator's main sequence: the operations every rank sends through
    /// its stream (BN statistics in a flat run, gradients through the hub, evaluations, commits).
    /// </summary>
    public long NextSequence() => _sequence++;

    public Protos.V1.OperationHeader Header(long sequence, long step, CollectiveKind kind, int layer, int length) => new()
    {
        RunId = RunId,
        Step = step,
        Sequence = sequence,
        Kind = (OperationKind)(int)kind,
        Layer = layer,
        Length = length,
    };

    /// <summary>Sends a message; waits at most the deadline for HTTP/2 flow control to make room (a coordinator that stopped reading).</summary>
    public void Send(WorkerMessage message)
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
    public CoordinatorMessage Await(Protos.V1.OperationHeader header, CoordinatorMessage.BodyOneofCase body)
    {
        while (true)
        {
            var message = Next(Describe(header)) ?? throw new ClusterException($"rank {Rank}: the coordinator ended the stream before answering {Describe(header)}");
            if (Handle(message, (header, body)) is { } answer) return answer;
        }
    }

    /// <summary>
    /// The reason to report for a failure seen outside the stream (the gradient ring broke, or
    /// did not form; the host's shared memory failed): a rank that died or stalled is usually the
    /// coordinator's verdict too, which names it (the coordinator sees its stream end, or its
    /// keep-alive pings go unanswered). So wait briefly for it; else <paramref name="failure"/>
    /// itself. Without this, the first rank to give up would close its stream and be blamed.
    /// </summary>
    public ClusterException VerdictFor(ClusterException failure) => AbortWithin(VerdictWait, failure) ?? failure;

    /// <summary>Ends this rank's stream and waits for the coordinator to close the run.</summary>
    public async Task CompleteAsync()
    {
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

    public void Dispose()
    {
        _call.Dispose();
        _deadline.Dispose();
        _writeDeadline.Dispose();
    }

    public static string Describe(Protos.V1.OperationHeader h) =>
        $"step {h.Step} {h.Kind}{(h.Layer >= 0 ? $" layer {h.Layer}" : "")} (operation #{h.Sequence})";

    /// <summary>
    /// The coordinator's abort if one arrives within <paramref name="wait"/> (notices on the way
    /// are handled), or the loss of the coordinator if the stream breaks meanwhile (then the
    /// failure is its consequence); else null.
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
            // no abort in time: the failure seen is the reason
        }
        catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
        {
            return new ClusterException($"{Lost(e).Message} ({cause.Message})", cause);
        }
        return null;
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
}
