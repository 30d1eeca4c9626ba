using System.Security.Cryptography;

namespace BnDist.Protos;

/// <summary>
/// The shared run token: part of the wire contract. Every call carries it as
/// <c>authorization: Bearer &lt;token&gt;</c>; a call without the right token is refused.
/// </summary>
public static class RunToken
{
    public const string Header = "authorization";
    public const string Scheme = "Bearer ";
    public const string EnvironmentVariable = "BNDIST_TOKEN";

    /// <summary>A fresh random token (256 bits, hex).</summary>
    public static string Generate() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    /// <summary>The token from a file (trimmed), else from BNDIST_TOKEN; null when neither is given.</summary>
    public static string? Resolve(string? tokenFile)
    {
        if (tokenFile is not null)
        {
            if (!File.Exists(tokenFile)) throw new FileNotFoundException($"token file {tokenFile} does not exist", tokenFile);
            string token = File.ReadAllText(tokenFile).Trim();
            if (token.Length == 0) throw new InvalidDataException($"token file {tokenFile} is empty");
            return token;
        }
        string? env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.IsNullOrWhiteSpace(env) ? null : env.Trim();
    }

    /// <summary>Constant-time comparison of a received header value with the expected token.</summary>
    public static bool Matches(string? headerValue, string token)
    {
        if (headerValue is null || !headerValue.StartsWith(Scheme, StringComparison.Ordinal)) return false;
        var given = System.Text.Encoding.UTF8.GetBytes(headerValue[Scheme.Length..]);
        var expected = System.Text.Encoding.UTF8.GetBytes(token);
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }

    /// <summary>Writes a new token to a file readable only by its owner.</summary>
    public static void WriteFile(string path, string token)
    {
        File.WriteAllText(path, token);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}
