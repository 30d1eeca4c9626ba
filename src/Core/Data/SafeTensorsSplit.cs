using System.Globalization;
using BnDist.Core.Checkpoints;

namespace BnDist.Core.Data;

/// <summary>
/// One split of a data set as a safetensors file (docs/data.md): a tensor <c>images</c>, uint8
/// or float32, [N, C, H, W] or [N, H, W, C] ([N, H, W]: one channel), and a tensor
/// <c>labels</c>, int64 (or int32, uint8) [N], each label in [0, <see cref="MaxClasses"/>).
/// Optional <c>__metadata__</c>: <c>layout</c> = <c>NCHW</c> or <c>NHWC</c>, and <c>classes</c>
/// = the number of classes.
/// </summary>
/// <remarks>
/// Without a <c>layout</c> key the layout is read from the shape: the dimension that holds the
/// channels is the one of dimensions 1 and 3 that is 1, 3 or 4 (gray, RGB, RGBA). When both are
/// (<c>[N, 3, 32, 3]</c>) or neither is (<c>[N, 8, 32, 32]</c>) the shape does not say, and the
/// file is refused with a message asking for the key. NHWC images are transposed to NCHW on load.
/// Every error is an <see cref="InvalidDataException"/> whose message names the file and the tensor.
/// </remarks>
public static class SafeTensorsSplit
{
    public const string ImagesTensor = "images";
    public const string LabelsTensor = "labels";
    public const string LayoutKey = "layout";
    public const string ClassesKey = "classes";

    /// <summary>The most classes a data set may have (labels up to 65535), as many as a model's widest layer.</summary>
    public const int MaxClasses = 65536;

    private const string Expected = "a data file holds images (uint8 or float32, [N, C, H, W] or [N, H, W, C]) and labels (int64 [N])";

    /// <exception cref="InvalidDataException">The file is not valid safetensors, or its tensors are not a data split (see the remarks).</exception>
    public static DataSplit Read(string path)
    {
        var file = SafeTensorsFile.Read(path);
        string imagesSource = $"{path}: tensor {ImagesTensor}", labelsSource = $"{path}: tensor {LabelsTensor}";
        var images = Require(file, path, ImagesTensor);
        var labels = Require(file, path, LabelsTensor);

        if (images.DType is not (SafeDType.U8 or SafeDType.F32))
            throw new InvalidDataException($"{imagesSource}: dtype {images.DType.ToSpecString()} is not supported (expected U8 or F32)");
        if (images.Shape.Length is not (3 or 4))
            throw new InvalidDataException($"{imagesSource}: shape {Format(images.Shape)} has rank {images.Shape.Length}, " +
                                           "expected [N, C, H, W] or [N, H, W, C] (or [N, H, W] for one channel)");
        if (labels.DType is not (SafeDType.I64 or SafeDType.I32 or SafeDType.U8))
            throw new InvalidDataException($"{labelsSource}: dtype {labels.DType.ToSpecString()} is not supported (expected I64; I32 and U8 are accepted too)");
        if (labels.Shape.Length != 1)
            throw new InvalidDataException($"{labelsSource}: shape {Format(labels.Shape)} has rank {labels.Shape.Length}, expected [N]");
        if (images.Shape[0] != labels.Shape[0])
            throw new InvalidDataException($"{path}: tensor {ImagesTensor} holds {images.Shape[0]} images but tensor {LabelsTensor} {labels.Shape[0]} labels");

        bool channelsLast = ChannelsLast(file, path, images.Shape);
        long[] s = images.Shape;
        var (channels, rows, cols) = s.Length == 3 ? (1L, s[1], s[2]) : channelsLast ? (s[3], s[1], s[2]) : (s[1], s[2], s[3]);
        if (channels < 1 || rows < 1 || cols < 1)
            throw new InvalidDataException($"{imagesSource}: shape {Format(s)} has an empty image dimension");

        int[] labelValues = ReadLabels(labels, labelsSource);
        int c = (int)channels, h = (int)rows, w = (int)cols;
        byte[]? pixels = null;
        float[]? values = null;
        if (images.DType == SafeDType.U8)
            pixels = channelsLast ? ToChannelsFirst(images.Data, labelValues.Length, h, w, c) : images.Data;
        else
        {
            var floats = file.GetF32(ImagesTensor, images.Shape);
            values = channelsLast ? ToChannelsFirst(floats, labelValues.Length, h, w, c) : floats;
        }
        return new DataSplit(DataFormat.SafeTensors, imagesSource, labelsSource, c, h, w, pixels, values, labelValues, DeclaredClasses(file, path));
    }

    private static SafeTensor Require(SafeTensorsFile file, string path, string name) =>
        file.TryGet(name, out var tensor) ? tensor : throw new InvalidDataException($"{path}: tensor {name}: missing ({Expected})");

    /// <summary>Whether the images are [N, H, W, C]: the metadata's layout, else the shape's (see the class remarks).</summary>
    private static bool ChannelsLast(SafeTensorsFile file, string path, long[] shape)
    {
        if (file.Metadata.TryGetValue(LayoutKey, out string? layout))
        {
            return layout.Trim().ToUpperInvariant() switch
            {
                "NCHW" => false,
                "NHWC" => true,
                _ => throw new InvalidDataException($"{path}: metadata {LayoutKey} '{layout}' is neither NCHW nor NHWC"),
            };
        }
        if (shape.Length == 3) return false;
        static bool ChannelLike(long d) => d is 1 or 3 or 4;
        bool first = ChannelLike(shape[1]), last = ChannelLike(shape[3]);
        if (first != last) return last;
        throw new InvalidDataException(
            $"{path}: tensor {ImagesTensor}: shape {Format(shape)} does not say where the channels are " +
            $"({(first ? "dimensions 1 and 3 are both" : "neither dimension 1 nor 3 is")} 1, 3 or 4): " +
            $"add metadata {LayoutKey}=NCHW or {LayoutKey}=NHWC (save_file(..., metadata={{\"{LayoutKey}\": \"NCHW\"}}))");
    }

    private static int? DeclaredClasses(SafeTensorsFile file, string path)
    {
        if (!file.Metadata.TryGetValue(ClassesKey, out string? text)) return null;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int classes) || classes is < 1 or > MaxClasses)
            throw new InvalidDataException($"{path}: metadata {ClassesKey} '{text}' is not a number of classes in [1, {MaxClasses}]");
        return classes;
    }

    private static int[] ReadLabels(SafeTensor labels, string source)
    {
        var result = new int[labels.Shape[0]];
        var data = labels.Data.AsSpan();
        for (int i = 0; i < result.Length; i++)
        {
            long label = labels.DType switch
            {
                SafeDType.I64 => System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(data[(8 * i)..]),
                SafeDType.I32 => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data[(4 * i)..]),
                _ => data[i],
            };
            if (label < 0) throw new InvalidDataException($"{source}: label {label} at index {i} is negative");
            if (label >= MaxClasses)
                throw new InvalidDataException($"{source}: label {label} at index {i} is out of range (at most {MaxClasses} classes, labels up to {MaxClasses - 1})");
            result[i] = (int)label;
        }
        return result;
    }

    /// <summary>[N, H, W, C] → [N, C, H, W].</summary>
    private static T[] ToChannelsFirst<T>(T[] source, int count, int rows, int cols, int channels)
    {
        var result = GC.AllocateUninitializedArray<T>(source.Length);
        int plane = rows * cols, sample = plane * channels;
        for (int n = 0; n < count; n++)
        {
            var from = source.AsSpan(n * sample, sample);
            var to = result.AsSpan(n * sample, sample);
            for (int p = 0; p < plane; p++)
                for (int c = 0; c < channels; c++)
                    to[c * plane + p] = from[p * channels + c];
        }
        return result;
    }

    private static string Format(long[] shape) => "[" + string.Join(",", shape) + "]";
}
