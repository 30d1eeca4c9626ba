namespace BnDist.Core.Data;

/// <summary>
/// SplitMix64 (Steele, Lea &amp; Flood 2014; Vigna's public-domain reference
/// <see href="https://prng.di.unimi.it/splitmix64.c"/>): a 64-bit state advanced by the golden
/// gamma and finalized by a variant of MurmurHash3's mixer. Fixed here, unlike
/// <see cref="System.Random"/>, so every process on every machine and .NET version draws the
/// same sequence from the same seed — which a distributed sampler relies on.
/// </summary>
internal struct SplitMix64(ulong seed)
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    private ulong _state = seed;

    /// <summary>The next 64 uniformly distributed bits.</summary>
    public ulong Next() => Mix(_state += Gamma);

    /// <summary>
    /// A uniform integer in [0, <paramref name="bound"/>), without modulo bias (Lemire's
    /// multiply-shift with rejection).
    /// </summary>
    public ulong NextBelow(ulong bound)
    {
        ulong high = Math.BigMul(Next(), bound, out ulong low);
        if (low < bound)
        {
            ulong threshold = (0UL - bound) % bound;
            while (low < threshold)
                high = Math.BigMul(Next(), bound, out low);
        }
        return high;
    }

    /// <summary>SplitMix64's output function: a bijective 64-bit mixer.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
