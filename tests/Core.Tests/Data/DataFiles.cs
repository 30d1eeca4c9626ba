using BnDist.Core.Checkpoints;

namespace BnDist.Core.Tests.Data;

/// <summary>
/// Writes safetensors data splits as <c>safetensors.numpy.save_file({"images": x, "labels": y}, path)</c>
/// does: tensors <c>images</c> and <c>labels</c>, optional metadata.
/// </summary>
internal static class DataFiles
{
    /// <summary>A split of uint8 <paramref name="pixels"/> of <paramref name="shape"/> and int64 labels.</summary>
    public static string WriteU8(string path, long[] shape, byte[] pixels, long[] labels, params (string Key, string Value)[] metadata)
    {
        var file = new SafeTensorsFile();
        file.Add("images", SafeDType.U8, shape, pixels);
        file.AddI64("labels", [labels.Length], labels);
        return Write(file, path, metadata);
    }

    /// <summary>A split of float32 <paramref name="values"/> of <paramref name="shape"/> and int64 labels.</summary>
    public static string WriteF32(string path, long[] shape, float[] values, long[] labels, params (string Key, string Value)[] metadata)
    {
        var file = new SafeTensorsFile();
        file.AddF32("images", shape, values);
        file.AddI64("labels", [labels.Length], labels);
        return Write(file, path, metadata);
    }

    public static string Write(SafeTensorsFile file, string path, params (string Key, string Value)[] metadata)
    {
        foreach (var (key, value) in metadata) file.SetMetadata(key, value);
        using var stream = File.Create(path);
        file.Write(stream);
        return path;
    }

    /// <summary>Pixel i of a generated image set: a pattern that differs in every position and channel.</summary>
    public static byte[] Pixels(int length, int salt = 0) => Enumerable.Range(0, length).Select(i => (byte)((i * 37 + salt * 11 + i / 7) % 256)).ToArray();

    /// <summary>Labels i mod <paramref name="classes"/>.</summary>
    public static long[] Labels(int count, int classes) => Enumerable.Range(0, count).Select(i => (long)(i % classes)).ToArray();

    /// <summary>
    /// A directory with train.safetensors and test.safetensors of uint8 NCHW images
    /// [n, <paramref name="channels"/>, <paramref name="rows"/>, <paramref name="cols"/>].
    /// </summary>
    public static TempDirectory Directory(int train, int test, int channels, int rows, int cols, int classes)
    {
        var dir = new TempDirectory();
        WriteU8(dir.File("train.safetensors"), [train, channels, rows, cols], Pixels(train * channels * rows * cols), Labels(train, classes));
        WriteU8(dir.File("test.safetensors"), [test, channels, rows, cols], Pixels(test * channels * rows * cols, salt: 1), Labels(test, classes));
        return dir;
    }
}
