using System.CommandLine;
using System.Globalization;

namespace BnDist.Cli.Commands;

/// <summary>
/// Declarations of options with one-line error messages that name the option: numbers parsed
/// with the invariant culture and checked against their range, choices, and files or
/// directories that must exist (inputs) or whose directory must exist (outputs). Every error
/// is a parse error, so the command never starts.
/// </summary>
internal static class Opt
{
    /// <summary>Whether the user gave <paramref name="option"/> on the command line (not its default).</summary>
    public static bool Given(this ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };

    public static Option<int> Int(string name, string description, int? fallback, int min = int.MinValue, string helpName = "N") =>
        Number(name, description, fallback, helpName, "an integer",
            s => (int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v), v), v => v >= min ? null : $"must be ≥ {min}, got {v}");

    public static Option<long> Long(string name, string description, long? fallback, long min = long.MinValue, string helpName = "N") =>
        Number(name, description, fallback, helpName, "an integer",
            s => (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v), v), v => v >= min ? null : $"must be ≥ {min}, got {v}");

    public static Option<double> Double(string name, string description, double? fallback, string helpName = "X") =>
        Number(name, description, fallback, helpName, "a number",
            s => (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v), v), _ => null);

    public static Option<string> String(string name, string description, string? fallback = null, string helpName = "S")
    {
        var option = new Option<string>(name) { Description = description, HelpName = helpName };
        if (fallback is not null) option.DefaultValueFactory = _ => fallback;
        option.Validators.Add(r =>
        {
            // "--save --quiet" would otherwise take "--quiet" as the file name.
            if (r.Tokens.Count > 0 && r.Tokens[0].Value.StartsWith("--", StringComparison.Ordinal))
                r.AddError($"{name} needs a value (got the option {r.Tokens[0].Value})");
        });
        return option;
    }

    /// <summary>A string that must be one of <paramref name="allowed"/>.</summary>
    public static Option<string> Choice(string name, string description, string fallback, params string[] allowed)
    {
        var option = String(name, description, fallback, string.Join('|', allowed));
        option.Validators.Add(r =>
        {
            string? value = r.Tokens.Count > 0 ? r.Tokens[0].Value : null;
            if (value is not null && !allowed.Contains(value))
                r.AddError($"{name} expects {string.Join(" or ", allowed)}, got '{value}'");
        });
        return option;
    }

    public static Option<bool> Flag(string name, string description) =>
        new(name) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>A file that must exist.</summary>
    public static Option<string> InputFile(string name, string description, string helpName = "FILE")
    {
        var option = String(name, description, helpName: helpName);
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && !r.Tokens[0].Value.StartsWith("--", StringComparison.Ordinal) && !File.Exists(r.Tokens[0].Value))
                r.AddError($"{name}: no such file '{r.Tokens[0].Value}'");
        });
        return option;
    }

    /// <summary>A directory that must exist.</summary>
    public static Option<string> InputDirectory(string name, string description, string helpName = "DIR")
    {
        var option = String(name, description, helpName: helpName);
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && !r.Tokens[0].Value.StartsWith("--", StringComparison.Ordinal) && !Directory.Exists(r.Tokens[0].Value))
                r.AddError($"{name}: no such directory '{r.Tokens[0].Value}'");
        });
        return option;
    }

    /// <summary>A file to write: its directory must exist.</summary>
    public static Option<string> OutputFile(string name, string description, string helpName = "FILE")
    {
        var option = String(name, description, helpName: helpName);
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0 || r.Tokens[0].Value.StartsWith("--", StringComparison.Ordinal)) return;
            string path = r.Tokens[0].Value;
            string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (Directory.Exists(path)) r.AddError($"{name}: '{path}' is a directory, not a file");
            else if (!Directory.Exists(directory)) r.AddError($"{name}: the directory of '{path}' does not exist");
        });
        return option;
    }

    private static Option<T> Number<T>(string name, string description, T? fallback, string helpName, string what,
        Func<string, (bool Ok, T Value)> parse, Func<T, string?> check) where T : struct
    {
        var option = new Option<T>(name) { Description = description, HelpName = helpName };
        if (fallback is { } f) option.DefaultValueFactory = _ => f;
        option.CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            var (ok, value) = parse(text);
            if (!ok)
            {
                r.AddError($"{name} expects {what}, got '{text}'");
                return default;
            }
            if (check(value) is { } problem) r.AddError($"{name} {problem}");
            return value;
        };
        return option;
    }

    /// <summary>
    /// Loads the training and test sets (docs/data.md) normalized as <paramref name="normalize"/>
    /// says: a --data directory that lacks its files or holds malformed ones is a usage error
    /// naming --data, a --normalize that does not fit the data one naming --normalize; the default
    /// directory's problems stay errors (exit 1).
    /// </summary>
    public static BnDist.Core.Data.DataSets LoadData(string? dataOption, string normalize)
    {
        try
        {
            return BnDist.Core.Data.DataSets.Load(dataOption ?? BnDist.Core.Data.Dataset.DefaultDirectory(), normalize);
        }
        catch (Exception e) when (dataOption is not null && e is FileNotFoundException or InvalidDataException)
        {
            throw new UsageException($"--data: {e.Message}");
        }
        catch (ArgumentException e) when (e.Message.StartsWith("--normalize", StringComparison.Ordinal))
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>The line that says how the inputs were normalized, or null for the IDX default (nothing to say).</summary>
    public static string? NormalizationLine(BnDist.Core.Data.DataSets data, string normalize) =>
        data.Train.Normalization == BnDist.Core.Data.InputNormalization.FashionMnist && string.IsNullOrWhiteSpace(normalize)
            ? null
            : $"normalize: {data.Normalization} ({data.NormalizationOrigin})";
}
