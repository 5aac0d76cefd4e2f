import BasinIO
import Foundation

/// Where a tensor sits in a layered model, read from its name as mergekit's architecture inference does: the
/// first `.<digits>.` in the name is the layer index (`model.layers.3.mlp.up_proj.weight` is layer 3 of prefix
/// `model.layers`). Tensors without one are loose: embeddings ("embed", "wte", "wpe", "word_embeddings",
/// "position_embeddings"; not "embed_out") come before the layers, the rest (final norm, LM head) after, as
/// mergekit's architecture files for LLaMA, Mistral, Qwen2, GPT-2, GPT-NeoX and BERT put them.
public struct LayerPosition: Sendable, Equatable {
    public var prefix: String
    public var index: Int
    public var suffix: String

    public func name(atLayer i: Int) -> String { "\(prefix).\(i).\(suffix)" }

    public init?(_ name: String) {
        let bytes = Array(name.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: ".") {
                var j = i + 1
                while j < bytes.count, bytes[j] >= UInt8(ascii: "0"), bytes[j] <= UInt8(ascii: "9") { j += 1 }
                if j > i + 1, j < bytes.count, bytes[j] == UInt8(ascii: "."), j - i - 1 <= 9 {
                    prefix = String(decoding: bytes[0..<i], as: UTF8.self)
                    index = Int(String(decoding: bytes[(i + 1)..<j], as: UTF8.self))!
                    suffix = String(decoding: bytes[(j + 1)...], as: UTF8.self)
                    return
                }
            }
            i += 1
        }
        return nil
    }

    public init(prefix: String, index: Int, suffix: String) {
        self.prefix = prefix
        self.index = index
        self.suffix = suffix
    }

    /// Loose tensors that mergekit's architectures list before the layers (input embeddings).
    public static func isPreLayer(_ name: String) -> Bool {
        let lower = name.lowercased()
        if lower.contains("embed_out") { return false }
        let parts = lower.split(separator: ".")
        return lower.contains("embed") || parts.contains("wte") || parts.contains("wpe")
            || lower.contains("word_embeddings") || lower.contains("position_embeddings")
    }
}

/// The layer structure of one model: how many layers each prefix has.
struct ModelLayout {
    var layerCounts: [String: Int] = [:]

    init(_ source: any TensorSource) {
        for name in source.names {
            if let p = LayerPosition(name) { layerCounts[p.prefix] = max(layerCounts[p.prefix] ?? 0, p.index + 1) }
        }
        // A Hugging Face config's layer count wins for a single stack (it can declare layers the file lacks: an error later).
        if layerCounts.count == 1, let hf = source as? HuggingFaceModel, let n = hf.declaredLayerCount, let key = layerCounts.keys.first {
            layerCounts[key] = n
        }
    }

    /// mergekit's depth position of a tensor for gradients: layer l of n is l / (n - 1) (1 for a single layer); loose
    /// tensors are planned at 0.
    func depth(_ name: String) -> Double {
        guard let p = LayerPosition(name), let n = layerCounts[p.prefix] else { return 0 }
        return n > 1 ? Double(p.index) / Double(n - 1) : 1
    }
}
