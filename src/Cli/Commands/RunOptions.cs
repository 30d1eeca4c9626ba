using System.CommandLine;
using System.Globalization;
using BnDist.Core.Checkpoints;
using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary>
/// The options that make a <see cref="TrainingConfig"/> — the math of a run, its length and
/// whether it evaluates — declared once for train, coordinator and launch. Only the options
/// given on the command line are applied, on top of a base config (the defaults, or what
/// configuration bound). <see cref="Resolve"/> gives <c>--resume</c> its one meaning: continue the
/// checkpoint's run.
/// </summary>
internal sealed class RunOptions
{
    private static readonly TrainingConfig Defaults = new();

    /// <summary>One option and the config field it sets; <paramref name="Math"/>: it changes what the run computes.</summary>
    private sealed record Field(Option Option, string Label, bool Math, Func<TrainingConfig, object> Get, Func<TrainingConfig, ParseResult, TrainingConfig> Set);

    private readonly List<Field> _fields = [];
    private readonly bool _knownModel;

    /// <param name="cluster">Declare --sync-bn too.</param>
    /// <param name="knownModel">Require a model ModelFactory builds (false for a coordinator, whose workers build the model).</param>
    public RunOptions(bool cluster, bool knownModel = true)
    {
        _knownModel = knownModel;
        var d = Defaults;
        Add(Opt.String("--model", "network: convnet, mlp-paper or mlp:W1,W2,… (a BN-ReLU MLP of those widths)", d.Model, "M"), "model", true,
            c => c.Model, (c, v) => c with { Model = v });
        Add(Opt.String("--norm", "normalization layers: bn, gn or none", d.Norm, "bn|gn|none"), "norm", true, c => c.Norm, (c, v) => c with { Norm = v });
        Add(Opt.Int("--epochs", "epochs to train", d.Epochs, min: 1), "epochs", false, c => c.Epochs, (c, v) => c with { Epochs = v });
        Add(Opt.Long("--steps", "stop after N steps in all (overrides --epochs; 0: whole epochs)", d.Steps, min: 0), "steps", false,
            c => c.Steps, (c, v) => c with { Steps = v });
        Add(Opt.Int("--batch-size", "the GLOBAL batch size (the workers split it)", d.BatchSize, min: 1, helpName: "B"), "batch size", true,
            c => c.BatchSize, (c, v) => c with { BatchSize = v });
        Add(Opt.Double("--lr", "base learning rate", d.LearningRate), "lr", true, c => c.LearningRate, (c, v) => c with { LearningRate = v });
        Add(Opt.String("--lr-schedule", "constant, step, exp or cosine", d.LrSchedule, "S"), "lr schedule", true,
            c => c.LrSchedule, (c, v) => c with { LrSchedule = v });
        Add(Opt.Long("--lr-step", "decay interval of step/exp in steps (0: one epoch)", d.LrStepSize, min: 0), "lr step", true,
            c => c.LrStepSize, (c, v) => c with { LrStepSize = v });
        Add(Opt.Double("--lr-gamma", "decay factor of step/exp", d.LrGamma), "lr gamma", true, c => c.LrGamma, (c, v) => c with { LrGamma = v });
        Add(Opt.Double("--momentum", "SGD momentum", d.Momentum), "momentum", true, c => c.Momentum, (c, v) => c with { Momentum = v });
        Add(Opt.Double("--weight-decay", "L2 weight decay", d.WeightDecay), "weight decay", true,
            c => c.WeightDecay, (c, v) => c with { WeightDecay = v });
        Add(Opt.Long("--seed", "seed of initialization and shuffling", (long)d.Seed, min: 0), "seed", true,
            c => (long)c.Seed, (c, v) => c with { Seed = (ulong)v });
        Add(Opt.Flag("--no-shuffle", "visit the samples in file order"), "shuffle", true, c => c.Shuffle, (c, v) => c with { Shuffle = !v });
        Add(Opt.Flag("--keep-last-batch", "train on an epoch's incomplete last batch too (default: drop it, as DataLoader's drop_last)"),
            "drop last batch", true, c => c.DropLast, (c, v) => c with { DropLast = !v });
        Add(Opt.Double("--bn-momentum", "running-average factor of batch norm", d.BnMomentum), "bn momentum", true,
            c => c.BnMomentum, (c, v) => c with { BnMomentum = v });
        Add(Opt.String("--bn-mode", "running averages: ema (exponential) or cumulative (the population average)", d.BnMode, "ema|cumulative"),
            "bn mode", true, c => c.BnMode, (c, v) => c with { BnMode = v });
        Add(Opt.String("--normalize", "input normalization: MEAN,STD per channel (or one pair for all); default: the training set's " +
                                      "statistics for uint8 safetensors data, Fashion-MNIST's for IDX, none for float32", helpName: "MEAN,STD[,…]"),
            "normalize", true, c => c.Normalize, (c, v) => c with { Normalize = Core.Data.InputNormalization.Canonical(v) });
        Add(Opt.String("--augment", "training-time augmentation: crop:P (random crop, zero padding P), flip (horizontal, p = 0.5), " +
                                    "e.g. crop:4,flip", helpName: "LIST"),
            "augment", true, c => c.Augment, (c, v) => c with { Augment = Core.Data.Augmentation.Canonical(v) });
        if (cluster)
            Add(Opt.Choice("--sync-bn", "off: each worker normalizes with its own shard (plain DDP)", "on", "on", "off"), "sync bn", true,
                c => c.SyncBatchNorm ? "on" : "off", (c, v) => c with { SyncBatchNorm = v == "on" });
        Add(Opt.Flag("--no-eval", "skip the test-set evaluations"), "evaluate", false, c => c.Evaluate, (c, v) => c with { Evaluate = !v });
    }

    private void Add<T>(Option<T> option, string label, bool math, Func<TrainingConfig, object> get, Func<TrainingConfig, T, TrainingConfig> set) =>
        _fields.Add(new Field(option, label, math, get, (c, r) => set(c, r.GetValue(option)!)));

    private Field Named(string name) => _fields.Single(f => f.Option.Name == name);

    public void AddTo(Command command)
    {
        foreach (var f in _fields) command.Options.Add(f.Option);
    }

    /// <summary><paramref name="config"/> with the options given on the command line applied, validated.</summary>
    public TrainingConfig Apply(ParseResult result, TrainingConfig config)
    {
        foreach (var f in _fields.Where(f => result.Given(f.Option))) config = f.Set(config, result);
        return Validated(config);
    }

    /// <summary>
    /// The config of a run, with or without <c>--resume</c>. Without: <paramref name="baseConfig"/>
    /// with the given options applied. With: the checkpoint's run (its config from the checkpoint's
    /// metadata) up to the --steps or --epochs given, else the checkpoint's. An option given that
    /// would change the math and differs from the checkpoint's is an error unless
    /// <paramref name="overrideConfig"/>; then it wins and <paramref name="note"/> is told which
    /// settings changed. Evaluation follows the command line.
    /// </summary>
    public TrainingConfig Resolve(ParseResult result, TrainingConfig baseConfig, string? resume, bool overrideConfig, Action<string> note,
        out long startStep)
    {
        startStep = 0;
        var requested = Apply(result, baseConfig);
        if (resume is null)
        {
            if (overrideConfig) throw new UsageException("--override-config only applies with --resume");
            return requested;
        }
        CheckpointInfo info;
        try
        {
            info = Checkpoint.ReadInfo(resume);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new UsageException($"--resume: {e.Message}");
        }
        startStep = info.Step;
        // A checkpoint without metadata still names its architecture.
        var run = info.Config ?? requested with { Model = info.Model, Norm = info.Norm };
        var conflicts = _fields.Where(f => f.Math && result.Given(f.Option) && !Equals(f.Get(run), f.Get(requested))).ToList();
        if (conflicts.Count > 0 && !overrideConfig)
            throw new UsageException("--resume continues the checkpoint's run, which these options would change: " +
                string.Join(", ", conflicts.Select(f => $"{f.Option.Name}{(f.Option.ValueType == typeof(bool) ? "" : " " + Show(f.Get(requested)))} " +
                                                        $"(the checkpoint's: {f.Label} {Show(f.Get(run))})")) +
                "; leave them out to continue that run, or add --override-config to change it");
        var effective = run with { Evaluate = requested.Evaluate };
        foreach (var f in conflicts) effective = f.Set(effective, result);
        if (conflicts.Count > 0)
            note("--override-config: " + string.Join(", ", conflicts.Select(f => $"{f.Label} {Show(f.Get(run))} → {Show(f.Get(requested))}")));
        // The length: the --steps or --epochs given, else the checkpoint's run's.
        if (result.Given(Named("--steps").Option)) effective = effective with { Steps = requested.Steps };
        else if (result.Given(Named("--epochs").Option)) effective = effective with { Epochs = requested.Epochs, Steps = 0 };
        if (effective.Steps > 0 && effective.Steps <= startStep)
            throw new UsageException($"--resume: the checkpoint is at step {startStep} and the run ends at step {effective.Steps}: nothing to train " +
                                     "(give a larger --steps or --epochs)");
        return Validated(effective);
    }

    private static string Show(object value) => value switch
    {
        double d => d.ToString("G", CultureInfo.InvariantCulture),
        bool b => b ? "on" : "off",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    private TrainingConfig Validated(TrainingConfig config)
    {
        try
        {
            return config.Validate(_knownModel);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }
}
