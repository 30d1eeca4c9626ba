using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;

namespace BnDist.Core.Training;

/// <summary>Reported after every step.</summary>
public readonly record struct StepReport(long Step, long TotalSteps, int Epoch, double LearningRate, StepResult Result, double SamplesPerSecond);

/// <summary>Reported at the end of every epoch (and of the run) with the test-set result.</summary>
public readonly record struct EpochReport(long Step, int Epoch, double TestLoss, double TestAccuracy);

/// <summary>
/// The training loop of one rank: walks the DistributedSampler's global batches from
/// <see cref="StartStep"/>, runs each through <see cref="TrainingStep"/> on this rank's
/// shard with the schedule's learning rate, and evaluates on the test set at the end of
/// each epoch. In one process rank = 0, world = 1.
/// </summary>
public sealed class Trainer
{
    private readonly TrainingConfig _config;
    private readonly Network _network;
    private readonly Dataset _train;
    private readonly Dataset? _test;
    private readonly ICollective _collective;
    private readonly TrainingStep _step;
    private readonly Evaluator _evaluator;

    public Trainer(TrainingConfig config, IBackend backend, Network network, Sgd optimizer, Dataset train, Dataset? test,
        ICollective collective, IGradientReducer gradients)
    {
        (_config, _network, _train, _test) = (config.Validate(knownModel: false), network, train, test);
        _collective = collective;
        foreach (var data in new[] { train, test })
            if (data?.MismatchWith(network.Architecture, network.SampleShape, network.Classes) is { } mismatch) throw new ArgumentException(mismatch);
        if (config.BatchesPerEpoch(train.Count) == 0)
            throw new ArgumentException($"--batch-size: the training set has {train.Count} samples, no whole batch of {config.BatchSize} " +
                                        "(--keep-last-batch trains on the short one)");
        Sampler = config.Sampler(train.Count, collective.WorldSize, collective.Rank);
        TotalSteps = config.TotalSteps(Sampler.BatchesPerEpoch);
        Schedule = config.Schedule(Sampler.BatchesPerEpoch);
        network.Context.Seed = config.Seed;
        _step = new TrainingStep(backend, network, optimizer, collective, gradients) { Augmentation = config.Augmentation };
        _evaluator = new Evaluator(backend, network);
    }

    /// <summary>The learning rate of each step; by default the config's schedule (a coordinator may own it instead).</summary>
    public Func<long, double>? LearningRateOf { get; set; }

    public DistributedSampler Sampler { get; }

    public LearningRateSchedule Schedule { get; }

    public long TotalSteps { get; }

    /// <summary>The first step to run (a resumed run starts where its checkpoint ended).</summary>
    public long StartStep { get; set; }

    public event Action<StepReport>? StepCompleted;

    public event Action<EpochReport>? EpochCompleted;

    /// <summary>Runs to the end (or cancellation, after a whole step) and returns the last test result.</summary>
    /// <remarks>First checks that every batch-norm layer gets at least two values per channel in every batch the run will visit (<see cref="CheckBatchNormSizes()"/>).</remarks>
    public EpochReport Run(CancellationToken cancellation = default)
    {
        CheckBatchNormSizes();
        int perEpoch = Sampler.BatchesPerEpoch;
        var last = new EpochReport(StartStep, (int)(StartStep / perEpoch), double.NaN, double.NaN);
        for (long step = StartStep; step < TotalSteps && !cancellation.IsCancellationRequested; step++)
        {
            int epoch = (int)(step / perEpoch), batch = (int)(step % perEpoch);
            var global = Sampler.GlobalBatch(epoch, batch);
            var (offset, count) = DistributedSampler.ShardOf(global.Length, _collective.WorldSize, _collective.Rank);
            double lr = LearningRateOf?.Invoke(step) ?? Schedule.At(step);
            _collective.BeginStep(step);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var result = _step.Run(_train, global.Slice(offset, count), global.Length, (float)lr, step, epoch);
            double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            StepCompleted?.Invoke(new StepReport(step, TotalSteps, epoch, lr, result, result.GlobalBatch / seconds));
            StepsRun = step + 1;
            if (_config.Evaluate && (batch == perEpoch - 1 || step == TotalSteps - 1))
            {
                last = Evaluate(step + 1, epoch);
                EpochCompleted?.Invoke(last);
            }
        }
        return last;
    }

    /// <summary>
    /// Throws an ArgumentException (one line, naming the layer) when a batch-norm layer would
    /// see fewer than two values per channel in a batch of steps [<see cref="StartStep"/>,
    /// <see cref="TotalSteps"/>): training it would fail in that step, so the run must not start.
    /// </summary>
    public void CheckBatchNormSizes()
    {
        string? problem = BatchNormProblem(_config, _network, _train.Count, _collective.WorldSize, StartStep);
        if (problem is not null) throw new ArgumentException(problem);
    }

    /// <summary>
    /// Why training <paramref name="network"/> with <paramref name="config"/> on
    /// <paramref name="trainCount"/> samples and <paramref name="worldSize"/> ranks, from
    /// <paramref name="startStep"/>, would give some batch-norm layer fewer than two values per
    /// channel in a batch (BatchNorm1d: m = samples; BatchNorm2d: m = samples·H·W, where the
    /// samples are the global batch with synchronized BN, else the smallest rank's shard);
    /// null when it would not.
    /// </summary>
    public static string? BatchNormProblem(TrainingConfig config, Network network, int trainCount, int worldSize, long startStep)
    {
        // Values per channel that one sample gives each BN layer: the product of its input's spatial dimensions.
        var perSample = network.LayerInputs(1)
            .Where(l => l.Layer is Layers.BatchNorm)
            .Select(l => (l.Layer.Name, Values: l.InputShape.Skip(2).Aggregate(1L, (a, b) => a * b)))
            .ToList();
        int perEpoch = config.BatchesPerEpoch(trainCount);
        if (perSample.Count == 0 || perEpoch == 0) return null;
        long total = config.TotalSteps(perEpoch);
        if (startStep >= total) return null;
        bool sync = config.SyncBatchNorm || worldSize == 1;
        int B = config.BatchSize, lastSize = config.DropLast ? B : trainCount - (perEpoch - 1) * B;
        // The short last batch is visited when some step in [start, total) is the last of its epoch.
        bool shortVisited = lastSize < B && startStep / perEpoch * perEpoch + perEpoch - 1 < total;
        bool fullVisited = lastSize == B || perEpoch > 1;
        foreach (int batch in new[] { fullVisited ? B : 0, shortVisited ? lastSize : 0 }.Where(n => n > 0))
        {
            int samples = sync ? batch : DistributedSampler.ShardOf(batch, worldSize, worldSize - 1).Count;
            var (name, values) = perSample.MinBy(p => p.Values);
            long m = samples * values;
            if (m >= 2) continue;
            string which = batch < B
                ? $"--keep-last-batch: the last batch of each epoch holds {batch} of {B} samples ({trainCount} mod {B})"
                : $"--batch-size {B}";
            string where = sync ? "" : $", split over {worldSize} ranks with --sync-bn off (the smallest shard: {samples})";
            string fix = batch < B
                ? "drop the short batch (leave out --keep-last-batch) or choose another --batch-size"
                : "use --sync-bn on, fewer workers or a larger --batch-size";
            return $"{which}{where}, so batch-norm layer {name} would normalize {m} value{(m == 1 ? "" : "s")} per channel; " +
                   $"it needs at least 2: {fix}";
        }
        return null;
    }

    /// <summary>The number of steps completed so far (for checkpoints).</summary>
    public long StepsRun { get; private set; }

    public EpochReport Evaluate(long step, int epoch)
    {
        if (_test is null) return new EpochReport(step, epoch, double.NaN, double.NaN);
        var (loss, accuracy) = _evaluator.Evaluate(_test, _collective);
        return new EpochReport(step, epoch, loss, accuracy);
    }
}
