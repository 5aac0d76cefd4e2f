import BasinTensor
import Foundation

extension MergeRecipe {
    /// The recipe as YAML in mergekit's schema: booleans as booleans, gradients as flow lists, filtered values as
    /// lists of {filter, value}, whole-number counts as integers. Paths are written as given. Everything but the
    /// Basin extensions (`seed`, `merge_method: basin_path`, fisher / regmean) is valid `mergekit-yaml` input.
    public func yaml() -> String {
        var lines = ["merge_method: \(method.rawValue)"]
        if let baseModel { lines.append("base_model: \(Self.quoted(baseModel))") }
        if !models.isEmpty {
            lines.append("models:")
            for m in models {
                lines.append("  - model: \(Self.quoted(m.model))")
                lines += parameterLines(m.parameters, indent: "    ")
            }
        }
        if !slices.isEmpty {
            lines.append("slices:")
            for s in slices {
                lines.append("  - sources:")
                for src in s.sources {
                    lines.append("      - model: \(Self.quoted(src.model))")
                    lines.append("        layer_range: [\(src.layerRange.lowerBound), \(src.layerRange.upperBound)]")
                    lines += parameterLines(src.parameters, indent: "        ")
                }
                if let b = s.baseModel { lines.append("    base_model: \(Self.quoted(b))") }
                lines += parameterLines(s.parameters, indent: "    ")
            }
        }
        lines += parameterLines(parameters, indent: "")
        if let dtype { lines.append("dtype: \(Self.mergekitName(dtype))") }
        if let outDType { lines.append("out_dtype: \(Self.mergekitName(outDType))") }
        switch tokenizerSource {
        case .base: lines.append("tokenizer_source: base")
        case let .model(m): lines.append("tokenizer_source: \(Self.quoted(m))")
        case nil: break
        }
        if seed != 0 { lines.append("seed: \(seed)  # Basin extension: mergekit takes --random-seed \(seed)") }
        if let p = pathPoint {
            lines.append("basin_path: {type: \(p.type.rawValue)" + (p.bends.map { ", bends: \(Self.quoted($0))" } ?? "") + "}")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func parameterLines(_ p: [String: ParameterValue], indent: String) -> [String] {
        guard !p.isEmpty else { return [] }
        let keys = p.keys.sorted()
        let allPlain = keys.allSatisfy { if case .filtered = p[$0]! { return false } else { return true } }
        if allPlain {
            return [indent + "parameters: {" + keys.map { "\($0): \(value(p[$0]!, name: $0))" }.joined(separator: ", ") + "}"]
        }
        var out = [indent + "parameters:"]
        for k in keys {
            switch p[k]! {
            case let .filtered(entries):
                out.append(indent + "  \(k):")
                for e in entries {
                    if let f = e.filter {
                        out.append(indent + "    - filter: \(Self.quoted(f))")
                        out.append(indent + "      value: \(value(e.value, name: k))")
                    } else {
                        out.append(indent + "    - value: \(value(e.value, name: k))")
                    }
                }
            case let v:
                out.append(indent + "  \(k): \(value(v, name: k))")
            }
        }
        return out
    }

    private func value(_ v: ParameterValue, name: String) -> String {
        let isCount = method.parameter(name)?.kind == .count
        switch v {
        case let .scalar(d): return isCount ? String(Int(d)) : Self.number(d)
        case let .boolean(b): return b ? "true" : "false"
        case let .gradient(values): return "[" + values.map(Self.number).joined(separator: ", ") + "]"
        case let .filtered(entries):
            // Nested filters are not mergekit syntax; write the first entry's value (never produced by the parser).
            return entries.first.map { value($0.value, name: name) } ?? "null"
        }
    }

    /// A YAML float that reads back as the same Double (shortest round-trip form, with a dot before any exponent
    /// so YAML 1.1 readers such as PyYAML see a float, not a string).
    static func number(_ d: Double) -> String {
        if d == d.rounded() && abs(d) < 1e15 { return String(Int(d)) + ".0" }
        var s = "\(d)"
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }), !s[..<e].contains(".") {
            s.insert(contentsOf: ".0", at: e)
        }
        return s
    }

    public static func mergekitName(_ d: DType) -> String {
        switch d {
        case .bf16: "bfloat16"
        case .f16: "float16"
        case .f64: "float64"
        default: "float32"
        }
    }

    static func quoted(_ s: String) -> String {
        let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "._-/".contains($0) }
            && !["true", "false", "null", "yes", "no", "on", "off", "~"].contains(s.lowercased()) && Double(s) == nil
        return plain ? s : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
