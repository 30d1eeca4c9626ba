using BnDist.Core.Collectives;

namespace BnDist.Coordinator;

/// <summary>Identifies one collective operation; every rank sends the same header for it.</summary>
public readonly record struct OperationHeader(long Step, long Sequence, CollectiveKind Kind, int Layer, int Length)
{
    public override string ToString() =>
        $"step {Step} {Kind}{(Layer >= 0 ? $" layer {Layer}" : "")} (operation #{Sequence}, {Length} values)";
}

/// <summary>What a rank did in one step, as it reported in its commit.</summary>
public readonly record struct StepTiming(double ComputeSeconds, double StatsExchangeSeconds, double GradientExchangeSeconds);

/// <summary>Messages from the coordinator to one rank, before the service turns them into protobuf.</summary>
public abstract record RankMessage;

/// <summary>The float64 sum of an operation.</summary>
public sealed record SumMessage(OperationHeader Header, double[] Values) : RankMessage;

/// <summary>
/// Values [Offset, Offset + Count) of the float32 sum of a chunked operation (gradients): the
/// hub reduces a range as soon as every rank has sent it, so answers stream back while later
/// chunks still arrive. <paramref name="Values"/> is the whole sum; the range is final.
/// </summary>
public sealed record FloatSumMessage(OperationHeader Header, float[] Values, int Offset, int Count) : RankMessage;

/// <summary>The reply to a step commit: summed metrics, the next step's learning rate, and whether to upload state.</summary>
public sealed record CommitMessage(OperationHeader Header, double[] Metrics, double NextLearningRate, bool UploadState) : RankMessage;

public sealed record CheckpointSavedMessage(long Step, string Path) : RankMessage;

public sealed record AbortMessage(string Reason) : RankMessage;
