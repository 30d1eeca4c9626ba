namespace BnDist.Core.Backends;

/// <summary>
/// The dropout draw, shared by every backend so that they drop the same elements: a
/// counter-based hash (SplitMix64's finalizer) of a per-sample key and the element's index
/// within the sample. The key mixes the run's seed, the step and the sample's index in the
/// data set (<see cref="SampleKey"/>), so a sample gets the same mask in a step whichever rank
/// holds it, for any number of workers.
/// </summary>
public static class DropoutMask
{
    /// <summary>The key of one sample in one step of one dropout layer.</summary>
    public static ulong SampleKey(ulong seed, long step, int layer, long sampleIndex) =>
        Mix(Mix(Mix(seed ^ 0x9E3779B97F4A7C15UL) ^ (ulong)step) ^ ((ulong)(uint)layer << 40) ^ (ulong)sampleIndex);

    /// <summary>Whether element <paramref name="element"/> survives: a uniform in [0, 1) with 24 bits ≥ p.</summary>
    public static bool Keep(ulong sampleKey, int element, float p) =>
        (Mix(sampleKey + (ulong)(uint)element * 0x9E3779B97F4A7C15UL) >> 40) * (1.0f / (1 << 24)) >= p;

    /// <summary>SplitMix64's output function: a bijection of 64-bit words with full avalanche.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
