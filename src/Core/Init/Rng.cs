using BnDist.Core.Data;

namespace BnDist.Core.Init;

/// <summary>
/// Doubles and Gaussians over <see cref="SplitMix64"/>, fully specified, so that the same seed
/// gives the same initial weights on every machine and .NET version (System.Random's
/// algorithm is not a contract). Not for cryptography.
/// </summary>
public sealed class Rng(ulong seed)
{
    private SplitMix64 _bits = new(seed);

    public ulong NextUInt64() => _bits.Next();

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Standard normal by Box–Muller (one of the pair is discarded: simple, and fast enough for init).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>A generator for a named purpose, independent of the order streams are drawn in.</summary>
    public static Rng For(ulong seed, string purpose)
    {
        ulong h = 14695981039346656037UL; // FNV-1a of the purpose, mixed with the seed
        foreach (char c in purpose) h = (h ^ c) * 1099511628211UL;
        return new Rng(seed ^ h);
    }
}
