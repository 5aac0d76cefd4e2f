import Foundation

/// `config.json` text as transformers' `save_pretrained` writes it (`json.dumps(d, indent=2, sort_keys=True)` and
/// a newline), from what `JSONSerialization` parsed. Hand-written because Foundation's writer turns a parsed
/// `0.0` into `0` and `10000.0` into `10000` (a config's floats came out as integers) and indents differently;
/// this one keeps each number's kind (`NSNumber.objCType`: floats stay floats, written as Python's `repr`), so
/// a merge's config.json is the donor's byte for byte except for the values the merge changes.
public enum ConfigJSON {
    public static func encode(_ object: [String: Any]) -> Data {
        var out = ""
        write(object, indent: 0, into: &out)
        return Data((out + "\n").utf8)
    }

    static func write(_ value: Any, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent + 2), close = String(repeating: " ", count: indent)
        switch value {
        case let d as [String: Any]:
            guard !d.isEmpty else { out += "{}"; return }
            // Python sorts keys by code point, which is the order of their UTF-8 bytes.
            let keys = d.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            out += "{\n"
            for (i, k) in keys.enumerated() {
                out += pad + string(k) + ": "
                write(d[k]!, indent: indent + 2, into: &out)
                out += i == keys.count - 1 ? "\n" : ",\n"
            }
            out += close + "}"
        case let a as [Any]:
            guard !a.isEmpty else { out += "[]"; return }
            out += "[\n"
            for (i, v) in a.enumerated() {
                out += pad
                write(v, indent: indent + 2, into: &out)
                out += i == a.count - 1 ? "\n" : ",\n"
            }
            out += close + "]"
        case let s as String:
            out += string(s)
        case is NSNull:
            out += "null"
        case let n as NSNumber:
            out += number(n)
        case let b as Bool:
            out += b ? "true" : "false"
        case let i as Int:
            out += String(i)
        case let x as Double:
            out += pythonRepr(x)
        default:
            out += string("\(value)")
        }
    }

    static func number(_ n: NSNumber) -> String {
        switch String(cString: n.objCType) {
        case "c", "B":
            // JSONSerialization's true/false (a char-typed NSNumber); a JSON number is never parsed as one.
            return n.boolValue ? "true" : "false"
        case "d", "f":
            return pythonRepr(n.doubleValue)
        case "Q", "L", "I", "S", "C":
            return String(n.uint64Value)
        default:
            return String(n.int64Value)
        }
    }

    /// Python's `repr` of a float: the shortest digits that read back to the same value (Swift's `description`
    /// finds the same ones), written positionally when the decimal point falls within 16 places left or 4 right of
    /// the first digit, else in exponent form (`1e-05`, `1e+16`); Infinity and NaN as Python's json writes them.
    public static func pythonRepr(_ x: Double) -> String {
        if x.isNaN { return "NaN" }
        if x.isInfinite { return x < 0 ? "-Infinity" : "Infinity" }
        var s = x.description
        var sign = ""
        if s.hasPrefix("-") { sign = "-"; s.removeFirst() }
        var exponent = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(s[s.index(after: e)...]) ?? 0
            s = String(s[..<e])
        }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        let whole = String(parts[0]), fraction = parts.count > 1 ? String(parts[1]) : ""
        var digits = Array(whole + fraction)
        // value = 0.d1 d2 ... x 10^point
        var point = whole.count + exponent
        while let first = digits.first, first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while let last = digits.last, last == "0" { digits.removeLast() }
        guard !digits.isEmpty else { return sign + "0.0" }
        let ds = String(digits)
        if point > 16 || point < -3 {
            let e = point - 1
            let mantissa = ds.count == 1 ? ds : String(ds.prefix(1)) + "." + String(ds.dropFirst())
            let magnitude = abs(e) < 10 ? "0\(abs(e))" : "\(abs(e))"
            return sign + mantissa + "e" + (e < 0 ? "-" : "+") + magnitude
        }
        if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + ds }
        if point >= ds.count { return sign + ds + String(repeating: "0", count: point - ds.count) + ".0" }
        return sign + String(ds.prefix(point)) + "." + String(ds.dropFirst(point))
    }

    /// A JSON string as Python's json writes it by default (`ensure_ascii`): non-ASCII as \uXXXX escapes
    /// (surrogate pairs beyond the BMP).
    static func string(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(unit)!)
            default: out += String(format: "\\u%04x", unit)
            }
        }
        return out + "\""
    }
}
