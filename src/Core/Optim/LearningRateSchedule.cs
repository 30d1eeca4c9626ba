namespace BnDist.Core.Optim;

/// <summary>
/// The learning rate at each step t (0-based) of a run of T steps:
/// <list type="bullet">
/// <item><c>constant</c>: lr₀.</item>
/// <item><c>step</c>: lr₀·γ^⌊t/s⌋ (PyTorch's StepLR, counted in steps; s = one epoch by default).</item>
/// <item><c>exp</c>: lr₀·γ^(t/s), a smooth exponential decay (the BN paper's schedule).</item>
/// <item><c>cosine</c>: lr₀·(1 + cos(π·t/T))/2, from lr₀ down to 0 at the last step.</item>
/// </list>
/// </summary>
public sealed record LearningRateSchedule(string Kind, double BaseRate, long TotalSteps, long StepSize, double Gamma)
{
    public static readonly string[] Kinds = ["constant", "step", "exp", "cosine"];

    public LearningRateSchedule Validate()
    {
        if (!Kinds.Contains(Kind)) throw new ArgumentException($"unknown learning-rate schedule '{Kind}' (expected {string.Join(", ", Kinds)})");
        if (!(BaseRate > 0) || double.IsInfinity(BaseRate)) throw new ArgumentOutOfRangeException(nameof(BaseRate), BaseRate, "the learning rate must be > 0");
        if (TotalSteps < 1) throw new ArgumentOutOfRangeException(nameof(TotalSteps), TotalSteps, "a run has at least one step");
        if (StepSize < 1) throw new ArgumentOutOfRangeException(nameof(StepSize), StepSize, "the decay interval must be ≥ 1 step");
        if (!(Gamma > 0)) throw new ArgumentOutOfRangeException(nameof(Gamma), Gamma, "the decay factor must be > 0");
        return this;
    }

    public double At(long step) => Kind switch
    {
        "constant" => BaseRate,
        "step" => BaseRate * Math.Pow(Gamma, step / StepSize),
        "exp" => BaseRate * Math.Pow(Gamma, (double)step / StepSize),
        "cosine" => BaseRate * 0.5 * (1 + Math.Cos(Math.PI * step / TotalSteps)),
        _ => throw new InvalidOperationException($"unknown schedule {Kind}"),
    };
}
