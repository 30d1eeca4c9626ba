namespace BnDist.Core.Checkpoints;

/// <summary>
/// The element types a safetensors file may declare in a tensor's <c>"dtype"</c> field. Each
/// member is named exactly as the spec string it stands for (<c>F32</c>, <c>BOOL</c>,
/// <c>F8_E4M3</c>, …); <see cref="SafeDTypeExtensions.ToSpecString"/> and
/// <see cref="SafeDTypeExtensions.TryParse"/> convert, <see cref="SafeDTypeExtensions.SizeInBytes"/>
/// gives the element size. All multi-byte types are stored little-endian.
/// Sub-byte types of newer spec revisions (F4, F6_*) and complex types are not supported: a
/// file using them is rejected on read as having an unknown dtype.
/// </summary>
public enum SafeDType
{
    /// <summary>Boolean, one byte per element (0 or 1).</summary>
    BOOL,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5 exponent bits and 2 mantissa bits (torch.float8_e5m2).</summary>
    F8_E5M2,
    /// <summary>8-bit float, 4 exponent bits and 3 mantissa bits (torch.float8_e4m3fn).</summary>
    F8_E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE 754 half precision (System.Half).</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of an IEEE 754 single.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE 754 single precision.</summary>
    F32,
    /// <summary>IEEE 754 double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Spec strings and element sizes of <see cref="SafeDType"/>.</summary>
public static class SafeDTypeExtensions
{
    /// <summary>Bytes per element (1, 2, 4 or 8); also the alignment the writer gives the type.</summary>
    public static int SizeInBytes(this SafeDType dtype) => dtype switch
    {
        SafeDType.BOOL or SafeDType.U8 or SafeDType.I8 or SafeDType.F8_E5M2 or SafeDType.F8_E4M3 => 1,
        SafeDType.I16 or SafeDType.U16 or SafeDType.F16 or SafeDType.BF16 => 2,
        SafeDType.I32 or SafeDType.U32 or SafeDType.F32 => 4,
        SafeDType.F64 or SafeDType.I64 or SafeDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>The string written in the header's <c>"dtype"</c> field, e.g. <c>"F32"</c>.</summary>
    public static string ToSpecString(this SafeDType dtype) => dtype switch
    {
        SafeDType.BOOL => "BOOL",
        SafeDType.U8 => "U8",
        SafeDType.I8 => "I8",
        SafeDType.F8_E5M2 => "F8_E5M2",
        SafeDType.F8_E4M3 => "F8_E4M3",
        SafeDType.I16 => "I16",
        SafeDType.U16 => "U16",
        SafeDType.F16 => "F16",
        SafeDType.BF16 => "BF16",
        SafeDType.I32 => "I32",
        SafeDType.U32 => "U32",
        SafeDType.F32 => "F32",
        SafeDType.F64 => "F64",
        SafeDType.I64 => "I64",
        SafeDType.U64 => "U64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>
    /// Parses a header dtype string. Exact and case-sensitive, as the spec is: <c>"f32"</c> or a
    /// number are not dtypes (unlike <see cref="Enum.TryParse{TEnum}(string, out TEnum)"/>).
    /// </summary>
    public static bool TryParse(string? text, out SafeDType dtype)
    {
        switch (text)
        {
            case "BOOL": dtype = SafeDType.BOOL; return true;
            case "U8": dtype = SafeDType.U8; return true;
            case "I8": dtype = SafeDType.I8; return true;
            case "F8_E5M2": dtype = SafeDType.F8_E5M2; return true;
            case "F8_E4M3": dtype = SafeDType.F8_E4M3; return true;
            case "I16": dtype = SafeDType.I16; return true;
            case "U16": dtype = SafeDType.U16; return true;
            case "F16": dtype = SafeDType.F16; return true;
            case "BF16": dtype = SafeDType.BF16; return true;
            case "I32": dtype = SafeDType.I32; return true;
            case "U32": dtype = SafeDType.U32; return true;
            case "F32": dtype = SafeDType.F32; return true;
            case "F64": dtype = SafeDType.F64; return true;
            case "I64": dtype = SafeDType.I64; return true;
            case "U64": dtype = SafeDType.U64; return true;
            default: dtype = default; return false;
        }
    }
}
