using System.Buffers.Binary;

namespace BnDist.Cli.Tests;

/// <summary>
/// A temporary directory holding a small IDX data set (28×28 images, random pixels, labels i mod 10)
/// of the sizes a test needs, so that whole epochs take milliseconds. Deleted on dispose.
/// </summary>
internal sealed class TinyData : IDisposable
{
    public TinyData(int train, int test)
    {
        Path = Directory.CreateTempSubdirectory("bndist-tiny-").FullName;
        var rng = new Random(train * 31 + test);
        Write("train", train, rng);
        Write("t10k", test, rng);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    private void Write(string prefix, int count, Random rng)
    {
        var images = new byte[16 + count * 28 * 28];
        BinaryPrimitives.WriteInt32BigEndian(images, 0x803);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(12), 28);
        rng.NextBytes(images.AsSpan(16));
        var labels = new byte[8 + count];
        BinaryPrimitives.WriteInt32BigEndian(labels, 0x801);
        BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), count);
        for (int i = 0; i < count; i++) labels[8 + i] = (byte)(i % 10);
        System.IO.File.WriteAllBytes(File($"{prefix}-images-idx3-ubyte"), images);
        System.IO.File.WriteAllBytes(File($"{prefix}-labels-idx1-ubyte"), labels);
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}
