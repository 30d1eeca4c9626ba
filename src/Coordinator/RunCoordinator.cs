using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>What a worker receives when the world is complete.</summary>
public sealed record JoinResult(string RunId, int Rank, int WorldSize, string ConfigJson,
    long StartStep, double LearningRate, TimeSpan OperationTimeout, IReadOnlyList<string> RingEndpoints, HostGroup? HostGroup = null);

/// <summary>One committed step, as the coordinator saw it.</summary>
public sealed record StepSummary(long Step, long TotalSteps, int Epoch, double Loss, double Accuracy, double LearningRate,
    double SamplesPerSecond, int[] LocalBatches, StepTiming[] Timings, double[] WaitSeconds);

/// <summary>The end of a run: success, or the reason it failed.</summary>
public sealed record RunOutcome(bool Succeeded, string? Error, long CommittedSteps, double TestAccuracy, string? Checkpoint);

/// <summary>A rank's call that cannot be served because the run has ended; the message is the run's reason.</summary>
public sealed class RunAbortedException(string reason) : Exception(reason);

/// <summary>
/// The coordinator of one run, free of gRPC: rendezvous, the model rendezvous (the workers'
/// layouts and rank 0's initial state: the coordinator never builds the network, so a user's
/// own model runs as well as a built-in one), the reduction of every collective (through
/// <see cref="OperationHub"/>), the learning-rate schedule, the authoritative BN running
/// statistics (<see cref="RunningAverages"/>: updated from each step's global statistics with
/// the same code the workers run, so the copies agree bit for bit), checkpoints (parameters from
/// rank 0, running statistics from here, written atomically), and the per-rank time accounting.
/// The gRPC service only translates messages to and from it.
/// </summary>
public sealed partial class RunCoordinator : IDisposable
{
    private readonly CoordinatorSettings _settings;
    private readonly ILogger _logger;
    private readonly Rendezvous _rendezvous;
    // --init or --resume: the checkpoint imposed on rank 0's freshly built state.
    private readonly SafeTensorsFile? _seed;
    private readonly string? _seedPath;
    private readonly TaskCompletionSource<byte[]> _prepared = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ModelLayout?[] _layouts = [];
    private byte[]? _rank0State;
    private long _prepareOpened;
    private volatile ModelLayout? _layout;
    private volatile RunningAverages _running = RunningAverages.None;
    private readonly TaskCompletionSource<RunOutcome> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _gate = new();
    private readonly long _startStep;
    private readonly Timer _deadlines;
    // Progress events, delivered in order by a thread of their own: a subscriber that blocks
    // (a full stderr pipe) delays the display, never a collective.
    private readonly Channel<Action> _events = Channel.CreateUnbounded<Action>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Thread _eventThread;
    // Cancelled a moment after the run has failed: the streams still open then (a rank that
    // stalled or whose link is cut) stop reading and writing, so the host can stop at once.
    private readonly CancellationTokenSource _streamsClosing = new();
    private int _over;
    private long _worldFormedAt;
    private World? _world;
    private OperationHub? _hub;
    // Shared-memory statistics: the hosts, the hub of the host leaders (several hosts), and rank 0's
    // statistics of the step being committed (one host).
    private HostPlan _plan = HostPlan.For(new World([]), "grpc", "", out _);
    private string? _planRefusal;
    private OperationHub? _statsHub;
    private (long Step, IReadOnlyList<(int Layer, double[] Values)> Layers)? _committedStatistics;
    private Channel<RankMessage>[] _outboxes = [];
    private bool[] _ended = [];
    private bool[] _streamOpened = [];
    private LearningRateSchedule? _schedule;
    private long _totalSteps, _committed;
    private int _batchesPerEpoch;
    private long _lastCommitAt = Stopwatch.GetTimestamp();
    private double _testAccuracy = double.NaN;
    private long _checkpointDue = -1;
    private MemoryStream? _upload;

    public RunCoordinator(CoordinatorSettings settings, ILogger<RunCoordinator> logger)
    {
        _settings = settings.Validate();
        _logger = logger;
        // Read now, so that a missing or corrupt file is reported before any worker joins; it is
        // checked against the model's layout once the workers have described it.
        _seedPath = settings.Resume ?? settings.Init;
        if (_seedPath is not null)
        {
            _seed = SafeTensorsFile.Read(_seedPath);
            var info = Checkpoint.Info(_seed, _seedPath);
            if (settings.Resume is not null) _startStep = info.Step;
        }
        _committed = _startStep;
        RunId = Guid.NewGuid().ToString("n")[..12];
        _rendezvous = new Rendezvous(settings.Workers, Protos.WireLimits.ProtocolVersion);
        OperationTimeout = TimeSpan.FromSeconds(settings.OperationTimeoutSeconds);
        _eventThread = new Thread(DeliverEvents) { IsBackground = true, Name = $"run {RunId} events" };
        _eventThread.Start();
        _deadlines = new Timer(_ => CheckDeadlines(), null, TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200));
    }

    /// <summary>How long the streams of a failed run may go on delivering its abort before they are closed.</summary>
    public static readonly TimeSpan StreamDrainGrace = TimeSpan.FromSeconds(1);

    /// <summary>How long a finished run waits for its progress events to be delivered before it reports its outcome.</summary>
    public static readonly TimeSpan EventDrainLimit = TimeSpan.FromSeconds(5);

    /// <summary>Cancelled <see cref="StreamDrainGrace"/> after the run failed: every stream still open then is closed.</summary>
    public CancellationToken StreamsClosing => _streamsClosing.Token;

    public string RunId { get; }

    public TimeSpan OperationTimeout { get; }

    public CoordinatorSettings Settings => _settings;

    /// <summary>
    /// The initial state every rank loads, once every rank has prepared and before any of them
    /// gets it (so a handler that writes it to a file finishes before the first step). A handler
    /// that throws an IOException or UnauthorizedAccessException ends the run with its message.
    /// </summary>
    public event Action<byte[]>? InitialStateReady;

    /// <summary>The model's layout as the workers described it (null until every rank has prepared).</summary>
    public ModelLayout? Layout => _layout;

    /// <summary>The authoritative running_mean and running_var of every batch-norm layer, by name (a consistent copy).</summary>
    public IReadOnlyDictionary<string, float[]> RunningStatistics() => _running.Snapshot();

    public Task<RunOutcome> Outcome => _outcome.Task;

    public long CommittedSteps => Interlocked.Read(ref _committed);

    /// <summary>How BN statistics travel in this run (decided when the world is complete).</summary>
    public StatsMode StatisticsMode => _plan.Mode;

    public string? LatestCheckpoint { get; private set; }

    public long LatestCheckpointStep { get; private set; } = -1;

    /// <summary>A step was committed. Raised on the run's event thread, in order, never on a thread that carries a collective.</summary>
    public event Action<StepSummary>? StepCommitted;

    /// <summary>An evaluation ended (step, test loss, test accuracy); raised like <see cref="StepCommitted"/>.</summary>
    public event Action<long, double, double>? Evaluated;

    /// <summary>Every worker has joined; raised like <see cref="StepCommitted"/>.</summary>
    public event Action<World>? WorldComplete;

    /// <summary>Waits for the world, then answers with the worker's rank and the run.</summary>
    public async Task<JoinResult> JoinAsync(JoinTicket ticket, CancellationToken cancellation)
    {
        _logger.LogInformation("Worker {WorkerId} ({Device}) joined: {Joined} of {World}", ticket.WorkerId, ticket.Device,
            _rendezvous.JoinedCount + 1, _rendezvous.WorldSize);
        World world;
        try
        {
            world = await _rendezvous.JoinAsync(ticket, TimeSpan.FromSeconds(_settings.JoinTimeoutSeconds), cancellation);
        }
        catch (JoinRefusedException e) when (e.Reason is JoinRefusal.ConfigurationDiffers or JoinRefusal.Timeout)
        {
            Abort($"rendezvous failed: {e.Message}");
            throw;
        }
        int trainCount = world.Members[0].TrainCount;
        if (_settings.Training.BatchesPerEpoch(trainCount) == 0)
        {
            string reason = $"--batch-size {_settings.Training.BatchSize}: the workers' training set has {trainCount} samples, " +
                            "not one whole batch (--keep-last-batch trains on the short one)";
            Abort(reason);
            throw new RunAbortedException(reason);
        }
        StartRun(world);
        if (_planRefusal is { } refused)
        {
            Abort($"rendezvous failed: {refused}");
            throw new RunAbortedException(refused);
        }
        int rank = world.RankOf(ticket.WorkerId);
        return new JoinResult(RunId, rank, world.Size, JsonSerializer.Serialize(_settings.Training),
            _startStep, _schedule!.At(_startStep), OperationTimeout, RingFor(rank),
            _plan.GroupOf(rank, directGradients: _settings.GradientPath == "ring" && (_plan.Mode == StatsMode.SingleHost || _ringEndpoints.Count > 0)));
    }

    private IReadOnlyList<string> _ringEndpoints = [];

    /// <summary>The ring a rank joins: every rank's in a flat run; in a hierarchical one the hosts' leaders' (the others sum in their host).</summary>
    private IReadOnlyList<string> RingFor(int rank) =>
        _plan.Mode == StatsMode.Hierarchical && !_plan.IsLeader(rank) ? [] : _ringEndpoints;

    private void StartRun(World world)
    {
        lock (_gate)
        {
            if (_world is not null) return;
            _world = world;
            var first = world.Members[0];
            _batchesPerEpoch = _settings.Training.BatchesPerEpoch(first.TrainCount);
            _totalSteps = _settings.Training.TotalSteps(_batchesPerEpoch);
            _schedule = _settings.Training.Schedule(_batchesPerEpoch);
            _layouts = new ModelLayout?[world.Size];
            // Synchronous continuations: the thread that completes an operation goes on to write
            // the answers to the idle streams itself, instead of waking one writer per rank.
            _outboxes = [.. Enumerable.Range(0, world.Size).Select(_ => Channel.CreateUnbounded<RankMessage>(
                new UnboundedChannelOptions { SingleReader = true, SingleWriter = false, AllowSynchronousContinuations = true }))];
            _ended = new bool[world.Size];
            _streamOpened = new bool[world.Size];
            _timings = new double[world.Size, 4];
            _hub = new OperationHub(world.Size, OperationTimeout, Completed, Abort, ChunkReduced);
            _plan = HostPlan.For(world, _settings.StatsTransport, RunId, out _planRefusal);
            if (_plan.Mode == StatsMode.Hierarchical)
                _statsHub = new OperationHub(_plan.Hosts.Count, OperationTimeout, StatisticsCompleted, Abort, rankNames: _plan.Leaders);
            _lastCommitAt = Stopwatch.GetTimestamp();
            _worldFormedAt = Stopwatch.GetTimestamp();
            _ringEndpoints = RingOf(world);
        }
        _logger.LogInformation("Run {RunId}: {World} workers ({Ranks}); {Steps} steps of global batch {Batch}, {PerEpoch} per epoch; {Statistics}",
            RunId, world.Size, string.Join(", ", world.Members.Select((m, r) => $"rank {r} = {m.WorkerId} on {m.Device}")),
            _totalSteps, _settings.Training.BatchSize, _batchesPerEpoch, _plan.Describe());
        Raise(WorldComplete, world);
    }

    /// <summary>Registers rank's one Collective stream; the reason it is refused, or null.</summary>
    public string? ClaimStream(int rank)
    {
        lock (_gate)
        {
            if (_world is null) return $"rank {rank} opened its stream before the world was complete";
            if (_streamOpened[rank]) return $"rank {rank} already has its stream open: a second one is refused";
            _streamOpened[rank] = true;
            return null;
        }
    }

    /// <summary>
    /// The gradient ring's endpoints, when the settings ask for a ring (gradients directly between
    /// the workers), there are two ranks or more on more than one host, and every one offered an
    /// endpoint: by rank in a flat run, by host (the leaders') in a hierarchical one; else none
    /// (gradients through the hub, or through the shared memory of the one host).
    /// </summary>
    private IReadOnlyList<string> RingOf(World world)
    {
        if (_settings.GradientPath != "ring" || world.Size < 2) return [];
        if (_plan.Mode == StatsMode.SingleHost) return []; // the workers of one host sum gradients in their shared memory
        if (_plan.Mode == StatsMode.Hierarchical)           // within each host in its shared memory, then around the leaders
            return world.Members.Any(m => string.IsNullOrEmpty(m.DataEndpoint)) ? [] : [.. _plan.Leaders.Select(r => world.Members[r].DataEndpoint)];
        if (world.Members.Any(m => string.IsNullOrEmpty(m.DataEndpoint)))
        {
            _logger.LogWarning("Gradients go through the coordinator: {Workers} offered no ring endpoint",
                string.Join(", ", world.Members.Where(m => string.IsNullOrEmpty(m.DataEndpoint)).Select(m => m.WorkerId)));
            return [];
        }
        return [.. world.Members.Select(m => m.DataEndpoint)];
    }

    /// <summary>The messages for one rank's stream; completes when the run ends.</summary>
    public ChannelReader<RankMessage> Outbox(int rank) => _outboxes[rank].Reader;

    public string WorkerIdOf(int rank) => _world?.Members[rank].WorkerId ?? $"rank {rank}";

    public void Contribute(int rank, OperationHeader header, double[] values)
    {
        if (header.Kind is not (CollectiveKind.BatchNormStats or CollectiveKind.BatchNormGradSums) || _plan.Mode == StatsMode.Flat)
        {
            Hub.Contribute(rank, header, values);
            return;
        }
        if (_plan.Mode == StatsMode.SingleHost)
            Abort($"rank {rank} sent {header} to the coordinator, but the run's ranks reduce BN statistics in shared memory");
        else if (!_plan.IsLeader(rank))
            Abort($"rank {rank} sent {header} to the coordinator, but only host leaders ({string.Join(", ", _plan.Leaders)}) exchange BN statistics");
        else
            _statsHub!.Contribute(_plan.HostOf(rank), header, values);
    }

    public void ContributeChunk(int rank, OperationHeader header, int offset, ReadOnlySpan<byte> bytes) =>
        Hub.ContributeChunk(rank, header, offset, bytes);

    /// <summary>
    /// A rank's end of a step. <paramref name="statistics"/>: the step's global BN statistics by layer,
    /// which rank 0 sends (and only it) when the ranks sum them in shared memory on one host.
    /// </summary>
    public void Commit(int rank, OperationHeader header, double[] metrics, StepTiming timing,
        IReadOnlyList<(int Layer, double[] Values)>? statistics = null)
    {
        if (header.Kind != CollectiveKind.Metrics || header.Layer != -1)
        {
            Abort($"rank {rank} sent a commit with the header of {header}");
            return;
        }
        if (statistics is { Count: > 0 })
        {
            if (rank != 0 || _plan.Mode != StatsMode.SingleHost)
            {
                Abort($"rank {rank} sent BN statistics with its commit of step {header.Step}; only rank 0 does, when one host reduces them in shared memory");
                return;
            }
            lock (_gate) _committedStatistics = (header.Step, statistics);
        }
        Hub.Contribute(rank, header, metrics, timing);
    }

    private OperationHub Hub => _hub ?? throw new InvalidOperationException("the run has not started");

    /// <summary>
    /// The run's shared-memory files, where this coordinator shares a machine with its workers (as
    /// under launch): the workers unlink a segment once every rank of its host has mapped it, so one
    /// is left only when a rank died before the others came. Best effort: a file that is not here,
    /// or not ours to remove, stays.
    /// </summary>
    private void RemoveSegments()
    {
        foreach (int rank in _plan.Leaders)
        {
            if (_plan.GroupOf(rank, directGradients: false) is not { Segment: { Length: > 0 } segment }) continue;
            try { File.Delete(Path.Combine(Core.Collectives.SharedMemory.SharedMemoryGroup.DefaultDirectory, segment)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* another machine's, or not ours */ }
        }
    }

    /// <summary>Where the ranks wait: the main hub's pending operation, else the host leaders' (a hierarchical run).</summary>
    private string? DescribePending()
    {
        string? main = _hub?.DescribePending();
        return main == "between operations" && _statsHub?.DescribePending() is { } stats && stats != main ? $"the hosts' exchange of {stats}" : main;
    }

    /// <summary>A rank's stream ended (normally when <paramref name="error"/> is null).</summary>
    public void StreamEnded(int rank, string? error)
    {
        bool allDone;
        lock (_gate)
        {
            if (_ended.Length == 0 || _ended[rank]) return;
            _ended[rank] = true;
            allDone = _ended.All(e => e);
        }
        string who = $"rank {rank} ({WorkerIdOf(rank)})";
        if (error is not null)
        {
            Abort($"{who} disconnected at step {CommittedSteps} while the others were in {DescribePending()}: {error}");
        }
        else if (CommittedSteps < _totalSteps)
        {
            Abort($"{who} closed its stream after {CommittedSteps} of {_totalSteps} steps, while the others were in {DescribePending()}");
        }
        else if (allDone)
        {
            Finish();
        }
    }

    /// <summary>
    /// The run-level deadlines, every 200 ms: each pending operation's (the hub), the model
    /// rendezvous's, and once the world is complete, every rank must open its stream within the
    /// operation timeout. A rank whose stream is open counts as alive: its end is noticed when
    /// the stream ends, and the host's HTTP/2 keep-alive pings end the stream of a rank that
    /// stopped answering.
    /// </summary>
    private void CheckDeadlines()
    {
        _hub?.CheckDeadlines();
        _statsHub?.CheckDeadlines();
        CheckPrepareDeadline();
        string? silent = null;
        lock (_gate)
        {
            if (_world is null || Volatile.Read(ref _over) != 0 || Stopwatch.GetElapsedTime(_worldFormedAt) <= OperationTimeout) return;
            var missing = Enumerable.Range(0, _world.Size).Where(r => !_streamOpened[r]).ToList();
            if (missing.Count > 0)
                silent = $"{string.Join(", ", missing.Select(r => $"rank {r} ({_world.Members[r].WorkerId})"))} joined but did not open " +
                         $"{(missing.Count == 1 ? "its" : "their")} collective stream within {OperationTimeout.TotalSeconds:0.#} s";
        }
        if (silent is not null) Abort(silent);
    }

    /// <summary>Fails the run: every rank gets the reason, and <see cref="Outcome"/> completes with it.</summary>
    public void Abort(string reason)
    {
        if (Interlocked.Exchange(ref _over, 1) != 0) return;
        RemoveSegments();
        _hub?.Fail(reason);
        _statsHub?.Fail(reason);
        _logger.LogError("Run {RunId} failed: {Reason}", RunId, reason);
        foreach (var box in _outboxes)
        {
            box.Writer.TryWrite(new AbortMessage(reason));
            box.Writer.TryComplete();
        }
        _prepared.TrySetException(new RunAbortedException(reason));
        try { _streamsClosing.CancelAfter(StreamDrainGrace); }
        catch (ObjectDisposedException) { /* disposed: nothing left to close */ }
        _outcome.TrySetResult(new RunOutcome(false, reason, CommittedSteps, _testAccuracy, LatestCheckpoint));
    }

    /// <summary>Every stream ended after the last step: the outcome follows the progress events already raised (within a limit).</summary>
    private void Finish()
    {
        if (Interlocked.Exchange(ref _over, 1) != 0) return;
        RemoveSegments();
        foreach (var box in _outboxes) box.Writer.TryComplete();
        _logger.LogInformation("Run {RunId} finished: {Steps} steps, test accuracy {Accuracy:F4}", RunId, CommittedSteps, _testAccuracy);
        var outcome = new RunOutcome(true, null, CommittedSteps, _testAccuracy, LatestCheckpoint);
        _events.Writer.TryWrite(() => _outcome.TrySetResult(outcome));
        _ = Task.Delay(EventDrainLimit).ContinueWith(_ => _outcome.TrySetResult(outcome), TaskScheduler.Default);
    }

    private void Raise<T>(Action<T>? handler, T argument)
    {
        if (handler is not null) _events.Writer.TryWrite(() => handler(argument));
    }

    private void DeliverEvents()
    {
        var reader = _events.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var deliver))
            {
                try
                {
                    deliver();
                }
                catch (Exception e)
                {
                    _logger.LogWarning("Run {RunId}: a progress subscriber failed: {Error}", RunId, $"{e.GetType().Name}: {e.Message}");
                }
            }
        }
    }

    public void Dispose()
    {
        _deadlines.Dispose();
        _events.Writer.TryComplete();
        _streamsClosing.Dispose();
    }
}
