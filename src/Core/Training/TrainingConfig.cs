using System.Text.Json.Serialization;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;

namespace BnDist.Core.Training;

/// <summary>
/// Everything that determines the math of a run. <see cref="BatchSize"/> is the GLOBAL batch:
/// the number of workers only splits it (docs/architecture.md §5), so the same config trains the same
/// model on any number of workers. Defaults are the recipe of <c>make run</c>.
/// </summary>
public sealed record TrainingConfig
{
    public string Model { get; init; } = "convnet";
    public string Norm { get; init; } = "bn";
    public int Epochs { get; init; } = 4;
    /// <summary>Stop after this many steps in all (0: run <see cref="Epochs"/> whole epochs).</summary>
    public long Steps { get; init; }
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.05;
    public string LrSchedule { get; init; } = "cosine";
    /// <summary>Decay interval of the step/exp schedules in steps (0: one epoch).</summary>
    public long LrStepSize { get; init; }
    public double LrGamma { get; init; } = 0.1;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 5e-4;
    public ulong Seed { get; init; }
    public bool Shuffle { get; init; } = true;
    public double BnMomentum { get; init; } = 0.1;
    /// <summary>"ema" (α = momentum) or "cumulative" (α = 1/t).</summary>
    public string BnMode { get; init; } = "ema";
    /// <summary>
    /// With several workers: true normalizes with the global batch's statistics (the point of
    /// BnDist); false keeps each worker's batch norm local, as plain DDP does.
    /// </summary>
    public bool SyncBatchNorm { get; init; } = true;
    /// <summary>Evaluate on the test set at the end of each epoch and of the run.</summary>
    public bool Evaluate { get; init; } = true;
    /// <summary>
    /// Drop the last batch of an epoch when it is short (DataLoader's drop_last=True, the
    /// default): a batch-norm layer cannot train on one value per channel, and a short batch
    /// would give one whenever the training set's size mod the batch size is 1.
    /// </summary>
    public bool DropLast { get; init; } = true;
    /// <summary>
    /// The input normalization, <c>--normalize MEAN,STD[,MEAN,STD…]</c> (<see cref="InputNormalization.Parse"/>);
    /// "" for the data's default: Fashion-MNIST's for IDX data, the training set's statistics for
    /// uint8 safetensors, none for float32 (docs/data.md). The workers apply it after they join.
    /// </summary>
    public string Normalize { get; init; } = "";
    /// <summary>The training-time augmentation, <c>--augment crop:P,flip</c> (<see cref="Data.Augmentation.Parse"/>); "" for none.</summary>
    public string Augment { get; init; } = "";

    public NormalizationOptions Normalization => new(Norm, BnMode == "cumulative" ? null : BnMomentum);

    /// <summary><see cref="Augment"/> parsed: null for none.</summary>
    [JsonIgnore]
    public Augmentation? Augmentation => Data.Augmentation.Parse(Augment);

    /// <summary>
    /// Throws an ArgumentException naming the first invalid setting. A coordinator never builds
    /// the network (the workers describe it), so it passes <paramref name="knownModel"/> false
    /// and a user's own model may carry any name.
    /// </summary>
    public TrainingConfig Validate(bool knownModel = true)
    {
        Require(!knownModel || ModelFactory.IsKnown(Model), $"--model: unknown model '{Model}' (expected {string.Join(", ", ModelFactory.Architectures)})");
        Require(ModelFactory.Normalizations.Contains(Norm), $"--norm: unknown normalization '{Norm}' (expected {string.Join(", ", ModelFactory.Normalizations)})");
        Require(Epochs >= 1 || Steps >= 1, "--epochs: must be ≥ 1 (or give --steps)");
        Require(Steps >= 0, "--steps: must be ≥ 0");
        Require(BatchSize >= 1, "--batch-size: must be ≥ 1");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), "--lr: must be a positive number");
        Require(LearningRateSchedule.Kinds.Contains(LrSchedule), $"--lr-schedule: unknown schedule '{LrSchedule}' (expected {string.Join(", ", LearningRateSchedule.Kinds)})");
        Require(LrStepSize >= 0, "--lr-step: must be ≥ 0");
        Require(LrGamma > 0 && double.IsFinite(LrGamma), "--lr-gamma: must be > 0");
        Require(Momentum >= 0 && Momentum < 1, "--momentum: must lie in [0, 1)");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), "--weight-decay: must be ≥ 0");
        Require(BnMomentum > 0 && BnMomentum <= 1, "--bn-momentum: must lie in (0, 1]");
        Require(BnMode is "ema" or "cumulative", $"--bn-mode: unknown mode '{BnMode}' (expected ema, cumulative)");
        if (!string.IsNullOrWhiteSpace(Normalize)) InputNormalization.Parse(Normalize);
        _ = Augmentation;
        return this;
    }

    /// <summary>
    /// Global batches per epoch over a training set of <paramref name="trainCount"/> samples:
    /// ⌊count / B⌋ with <see cref="DropLast"/>, else ⌈count / B⌉ (as <see cref="Data.DistributedSampler"/> walks them).
    /// </summary>
    public int BatchesPerEpoch(int trainCount) =>
        DropLast ? trainCount / BatchSize : (int)(((long)trainCount + BatchSize - 1) / BatchSize);

    /// <summary>Total steps of the run given the number of batches per epoch.</summary>
    public long TotalSteps(int batchesPerEpoch) => Steps > 0 ? Steps : (long)Epochs * batchesPerEpoch;

    /// <summary>The sampler rank <paramref name="rank"/> of <paramref name="worldSize"/> draws this run's batches from (the trainer's).</summary>
    public DistributedSampler Sampler(int trainCount, int worldSize, int rank) =>
        new(trainCount, BatchSize, worldSize, rank, Shuffle, Seed, DropLast);

    public LearningRateSchedule Schedule(int batchesPerEpoch) =>
        new LearningRateSchedule(LrSchedule, LearningRate, TotalSteps(batchesPerEpoch),
            LrStepSize > 0 ? LrStepSize : batchesPerEpoch, LrGamma).Validate();

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }
}
