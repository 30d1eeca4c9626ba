using System.Globalization;

namespace BnDist.Cli.Commands;

/// <summary>A command-line mistake: printed as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Reads <c>--name value</c>, <c>--name=value</c> and value-less flags against a fixed set of
/// known names. Unknown names, missing or malformed values and repeated options are
/// <see cref="UsageException"/>s naming the option. Every option read is marked, so
/// <see cref="Finish"/> can reject the ones the command does not take.
/// </summary>
public sealed class ArgReader
{
    private readonly string _command;
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _known = new(StringComparer.Ordinal);

    public ArgReader(string command, IEnumerable<string> args)
    {
        _command = command;
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
                throw new UsageException($"{command}: unexpected argument '{a}' (options look like --name value)");
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                value = list[++i];
            }
            if (!_values.TryAdd(name, value)) throw new UsageException($"{command}: --{name} given twice");
        }
    }

    public bool Help => Flag("help");

    public string? String(string name)
    {
        _known.Add(name);
        if (!_values.TryGetValue(name, out string? v)) return null;
        return v ?? throw new UsageException($"{_command}: --{name} needs a value");
    }

    public string String(string name, string fallback) => String(name) ?? fallback;

    public bool Flag(string name)
    {
        _known.Add(name);
        if (!_values.TryGetValue(name, out string? v)) return false;
        if (v is not null) throw new UsageException($"{_command}: --{name} takes no value (got '{v}')");
        return true;
    }

    public int Int(string name, int fallback, int min = int.MinValue) =>
        (int)Parse(name, fallback, min, s => (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) && v is >= int.MinValue and <= int.MaxValue, v), "an integer");

    public long Long(string name, long fallback, long min = long.MinValue) =>
        Parse(name, fallback, min, s => (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v), v), "an integer");

    public double Double(string name, double fallback)
    {
        string? s = String(name);
        if (s is null) return fallback;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw new UsageException($"{_command}: --{name} expects a number, got '{s}'");
        return v;
    }

    /// <summary>Rejects options nobody asked for.</summary>
    public void Finish()
    {
        foreach (string name in _values.Keys)
            if (!_known.Contains(name))
                throw new UsageException($"{_command}: unknown option --{name} (see bndist {_command} --help)");
    }

    private long Parse(string name, long fallback, long min, Func<string, (bool, long)> parse, string what)
    {
        string? s = String(name);
        if (s is null) return fallback;
        var (ok, v) = parse(s);
        if (!ok) throw new UsageException($"{_command}: --{name} expects {what}, got '{s}'");
        if (v < min) throw new UsageException($"{_command}: --{name} must be ≥ {min}, got {v}");
        return v;
    }
}
