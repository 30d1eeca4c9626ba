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
        Sampler = new DistributedSampler(train.Count, config.BatchSize, collective.WorldSize, collective.Rank, config.Shuffle, config.Seed);
        if (Sampler.BatchesPerEpoch == 0)
            throw new ArgumentException($"--batch-size: the training set has {train.Count} samples, no whole batch of {config.BatchSize}");
        TotalSteps = config.TotalSteps(Sampler.BatchesPerEpoch);
        Schedule = config.Schedule(Sampler.BatchesPerEpoch);
        _step = new TrainingStep(backend, network, optimizer, collective, gradients);
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
    public EpochReport Run(CancellationToken cancellation = default)
    {
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
            var result = _step.Run(_train, global.Slice(offset, count), global.Length, (float)lr);
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

    /// <summary>The number of steps completed so far (for checkpoints).</summary>
    public long StepsRun { get; private set; }

    public EpochReport Evaluate(long step, int epoch)
    {
        if (_test is null) return new EpochReport(step, epoch, double.NaN, double.NaN);
        var (loss, accuracy) = _evaluator.Evaluate(_test, _collective);
        return new EpochReport(step, epoch, loss, accuracy);
    }
}
