using System.Buffers.Binary;
using BnDist.Core.Checkpoints;

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

    private TinyData(string path) => Path = path;

    public string Path { get; }

    /// <summary>
    /// The same kind of data as train.safetensors and test.safetensors, as
    /// <c>safetensors.numpy.save_file({"images": x, "labels": y}, …)</c> writes them: uint8 images
    /// [n, size, size, channels] (NHWC; 28×28×1 by default), int64 labels i mod 10.
    /// </summary>
    public static TinyData SafeTensors(int train, int test, int size = 28, int channels = 1)
    {
        var data = new TinyData(Directory.CreateTempSubdirectory("bndist-tiny-st-").FullName);
        var rng = new Random(train * 31 + test);
        foreach (var (name, count) in new[] { ("train", train), ("test", test) })
        {
            var file = new SafeTensorsFile();
            var pixels = new byte[count * size * size * channels];
            rng.NextBytes(pixels);
            file.Add("images", SafeDType.U8, [count, size, size, channels], pixels);
            file.AddI64("labels", [count], Enumerable.Range(0, count).Select(i => (long)(i % 10)).ToArray());
            using var stream = System.IO.File.Create(data.File($"{name}.safetensors"));
            file.Write(stream);
        }
        return data;
    }

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
