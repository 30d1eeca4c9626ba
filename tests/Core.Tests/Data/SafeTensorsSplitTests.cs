using BnDist.Core.Checkpoints;
using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

/// <summary>A safetensors file as one split of a data set: layouts, element types, and one clear error per kind of bad file.</summary>
public sealed class SafeTensorsSplitTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Uint8_NCHW_images_are_read_as_they_are()
    {
        byte[] pixels = DataFiles.Pixels(2 * 3 * 5 * 6);
        string path = DataFiles.WriteU8(_dir.File("train.safetensors"), [2, 3, 5, 6], pixels, [4, 1]);
        var split = SafeTensorsSplit.Read(path);
        Assert.Equal((2, 3, 5, 6), (split.Count, split.Channels, split.Rows, split.Cols));
        Assert.False(split.IsFloat);
        Assert.Equal(pixels, split.Pixels.ToArray());
        Assert.Equal([4, 1], split.Labels.ToArray());
        Assert.Null(split.DeclaredClasses);
        Assert.Equal($"{path}: tensor images", split.ImagesSource);
    }

    [Fact]
    public void Uint8_NHWC_images_are_transposed_to_NCHW()
    {
        const int n = 2, h = 5, w = 6, c = 3;
        byte[] nhwc = DataFiles.Pixels(n * h * w * c);
        var split = SafeTensorsSplit.Read(DataFiles.WriteU8(_dir.File("a.safetensors"), [n, h, w, c], nhwc, [0, 1]));
        Assert.Equal((c, h, w), (split.Channels, split.Rows, split.Cols));
        for (int s = 0; s < n; s++)
            for (int ch = 0; ch < c; ch++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        Assert.Equal(nhwc[((s * h + y) * w + x) * c + ch], split.Pixels[((s * c + ch) * h + y) * w + x]);
    }

    [Fact]
    public void Float32_images_are_read_as_they_are_in_either_layout()
    {
        float[] nchw = Enumerable.Range(0, 2 * 1 * 5 * 5).Select(i => i * 0.25f - 3).ToArray();
        var split = SafeTensorsSplit.Read(DataFiles.WriteF32(_dir.File("f.safetensors"), [2, 1, 5, 5], nchw, [0, 2]));
        Assert.True(split.IsFloat);
        Assert.Equal(nchw, split.Values.ToArray());

        // [2, 5, 5, 1] is NHWC with one channel: the same values in the same order.
        split = SafeTensorsSplit.Read(DataFiles.WriteF32(_dir.File("g.safetensors"), [2, 5, 5, 1], nchw, [0, 2]));
        Assert.Equal((1, 5, 5), (split.Channels, split.Rows, split.Cols));
        Assert.Equal(nchw, split.Values.ToArray());
    }

    [Fact]
    public void Rank_3_images_have_one_channel()
    {
        var split = SafeTensorsSplit.Read(DataFiles.WriteU8(_dir.File("r.safetensors"), [3, 4, 7], DataFiles.Pixels(3 * 4 * 7), [0, 1, 2]));
        Assert.Equal((3, 1, 4, 7), (split.Count, split.Channels, split.Rows, split.Cols));
    }

    [Theory]
    [InlineData(new long[] { 2, 3, 8, 3 }, "dimensions 1 and 3 are both 1, 3 or 4")]
    [InlineData(new long[] { 2, 1, 5, 4 }, "dimensions 1 and 3 are both 1, 3 or 4")]
    [InlineData(new long[] { 2, 8, 5, 5 }, "neither dimension 1 nor 3 is 1, 3 or 4")]
    public void A_shape_that_does_not_say_where_the_channels_are_is_refused_unless_the_metadata_does(long[] shape, string why)
    {
        byte[] pixels = DataFiles.Pixels((int)(shape[0] * shape[1] * shape[2] * shape[3]));
        string path = DataFiles.WriteU8(_dir.File("amb.safetensors"), shape, pixels, [0, 1]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsSplit.Read(path));
        Assert.StartsWith($"{path}: tensor images: shape [{string.Join(",", shape)}] does not say where the channels are", e.Message);
        Assert.Contains(why, e.Message);
        Assert.Contains("add metadata layout=NCHW or layout=NHWC", e.Message);

        var nchw = SafeTensorsSplit.Read(DataFiles.WriteU8(_dir.File("nchw.safetensors"), shape, pixels, [0, 1], ("layout", "NCHW")));
        Assert.Equal((shape[1], shape[2], shape[3]), (nchw.Channels, nchw.Rows, nchw.Cols));
        Assert.Equal(pixels, nchw.Pixels.ToArray());
        var nhwc = SafeTensorsSplit.Read(DataFiles.WriteU8(_dir.File("nhwc.safetensors"), shape, pixels, [0, 1], ("layout", "nhwc")));
        Assert.Equal((shape[3], shape[1], shape[2]), (nhwc.Channels, nhwc.Rows, nhwc.Cols));
    }

    [Fact]
    public void The_metadata_may_declare_the_classes()
    {
        var split = SafeTensorsSplit.Read(DataFiles.WriteU8(_dir.File("c.safetensors"), [2, 1, 5, 5], DataFiles.Pixels(50), [0, 1], ("classes", "100")));
        Assert.Equal(100, split.DeclaredClasses);
    }

    public static TheoryData<string, Func<string, string>, string> BadFiles => new()
    {
        { "images of another dtype", p => Write(p, F16Images([2, 1, 5, 5]), Labels64(0, 1)), "tensor images: dtype F16 is not supported (expected U8 or F32)" },
        { "labels of another dtype", p => Write(p, U8Images([2, 1, 5, 5]), new SafeTensor("labels", SafeDType.F32, [2], new byte[8])),
            "tensor labels: dtype F32 is not supported (expected I64" },
        { "images of rank 2", p => Write(p, U8Images([2, 25]), Labels64(0, 1)), "tensor images: shape [2,25] has rank 2, expected [N, C, H, W] or [N, H, W, C]" },
        { "images of rank 5", p => Write(p, U8Images([2, 1, 1, 5, 5]), Labels64(0, 1)), "tensor images: shape [2,1,1,5,5] has rank 5" },
        { "labels of rank 2", p => Write(p, U8Images([2, 1, 5, 5]), new SafeTensor("labels", SafeDType.I64, [2, 1], new byte[16])),
            "tensor labels: shape [2,1] has rank 2, expected [N]" },
        { "a negative label", p => Write(p, U8Images([3, 1, 5, 5]), Labels64(0, 1, -1)), "tensor labels: label -1 at index 2 is negative" },
        { "a label beyond any model", p => Write(p, U8Images([2, 1, 5, 5]), Labels64(70000, 1)), "tensor labels: label 70000 at index 0 is out of range" },
        { "counts that differ", p => Write(p, U8Images([3, 1, 5, 5]), Labels64(0, 1)), "tensor images holds 3 images but tensor labels 2 labels" },
        { "no images", p => Write(p, Labels64(0, 1)), "tensor images: missing" },
        { "no labels", p => Write(p, U8Images([2, 1, 5, 5])), "tensor labels: missing" },
        { "an empty image dimension", p => Write(p, U8Images([2, 3, 0, 5]), Labels64(0, 1)), "tensor images: shape [2,3,0,5] has an empty image dimension" },
        { "a layout that is none", p => Write(p, U8Images([2, 1, 5, 5]), Labels64(0, 1), ("layout", "CHWN")), "metadata layout 'CHWN' is neither NCHW nor NHWC" },
        { "a number of classes that is none", p => Write(p, U8Images([2, 1, 5, 5]), Labels64(0, 1), ("classes", "ten")),
            "metadata classes 'ten' is not a number of classes" },
        { "a truncated file", p => Truncate(Write(p, U8Images([2, 1, 5, 5]), Labels64(0, 1)), 7), "tensor images: data_offsets" },
        { "not a safetensors file", p => { File.WriteAllText(p, "images,labels\n"); return p; }, "header length" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void A_bad_file_is_one_error_naming_the_file_and_the_tensor(string what, Func<string, string> write, string expected)
    {
        string path = write(_dir.File("train.safetensors"));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsSplit.Read(path));
        Assert.True(e.Message.StartsWith(path + ": ", StringComparison.Ordinal), $"{what}: {e.Message}");
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {e.Message}");
        Assert.DoesNotContain("\n", e.Message);
    }

    private static SafeTensor U8Images(long[] shape) => new("images", SafeDType.U8, shape, new byte[shape.Aggregate(1L, (a, b) => a * b)]);

    private static SafeTensor F16Images(long[] shape) => new("images", SafeDType.F16, shape, new byte[2 * shape.Aggregate(1L, (a, b) => a * b)]);

    private static SafeTensor Labels64(params long[] labels)
    {
        var file = new SafeTensorsFile();
        return file.AddI64("labels", [labels.Length], labels);
    }

    private static string Write(string path, params object[] parts)
    {
        var file = new SafeTensorsFile();
        foreach (var part in parts)
        {
            if (part is SafeTensor t) file.Add(t);
            else if (part is ValueTuple<string, string> (var key, var value)) file.SetMetadata(key, value);
        }
        return DataFiles.Write(file, path);
    }

    private static string Truncate(string path, int bytes)
    {
        byte[] all = File.ReadAllBytes(path);
        File.WriteAllBytes(path, all[..^bytes]);
        return path;
    }
}
