import BasinIO
import BasinTensor
import Foundation

/// The graph of a GPT-2 or LLaMA-family causal language model, built from its `config.json`, with the
/// tensor names `save_pretrained` writes (with or without the `transformer.` / `model.` prefix a bare
/// base model lacks).
public struct TransformerArchitecture: Sendable {
    public let config: TransformerConfig
    /// The prefix of the backbone's tensors: "transformer." (GPT-2), "model." (LLaMA), or "".
    public let prefix: String
    public private(set) var architecture: Architecture

    /// Tensor names of one layer.
    public struct LayerNames: Sendable, Equatable {
        public var attentionNorm: String, attentionNormBias: String? = nil
        public var mlpNorm: String, mlpNormBias: String? = nil
        /// GPT-2: c_attn (weight [in, 3 out]) and its bias; LLaMA: q, k, v projections and their biases.
        public var qkv: String? = nil, qkvBias: String? = nil
        public var q: String? = nil, k: String? = nil, v: String? = nil
        public var qBias: String? = nil, kBias: String? = nil, vBias: String? = nil
        public var o: String, oBias: String? = nil
        /// GPT-2: c_fc / c_proj; LLaMA: up_proj / down_proj with gate_proj.
        public var up: String, upBias: String? = nil
        public var gate: String? = nil, gateBias: String? = nil
        public var down: String, downBias: String? = nil
    }

    public var embedding: String { config.family == .gpt2 ? prefix + "wte.weight" : prefix + "embed_tokens.weight" }
    public var positionEmbedding: String? { config.family == .gpt2 ? prefix + "wpe.weight" : nil }
    public var finalNorm: String { config.family == .gpt2 ? prefix + "ln_f.weight" : prefix + "norm.weight" }
    public var finalNormBias: String? { config.family == .gpt2 ? prefix + "ln_f.bias" : nil }
    /// The output matrix: the embedding when tied.
    public var outputWeight: String { config.tiedEmbeddings ? embedding : "lm_head.weight" }

    public func layer(_ i: Int) -> LayerNames {
        let c = config
        if c.family == .gpt2 {
            let p = "\(prefix)h.\(i)."
            return LayerNames(attentionNorm: p + "ln_1.weight", attentionNormBias: p + "ln_1.bias",
                              mlpNorm: p + "ln_2.weight", mlpNormBias: p + "ln_2.bias",
                              qkv: p + "attn.c_attn.weight", qkvBias: p + "attn.c_attn.bias",
                              o: p + "attn.c_proj.weight", oBias: p + "attn.c_proj.bias",
                              up: p + "mlp.c_fc.weight", upBias: p + "mlp.c_fc.bias",
                              down: p + "mlp.c_proj.weight", downBias: p + "mlp.c_proj.bias")
        }
        let p = "\(prefix)layers.\(i)."
        func bias(_ on: Bool, _ name: String) -> String? { on ? p + name + ".bias" : nil }
        return LayerNames(attentionNorm: p + "input_layernorm.weight", mlpNorm: p + "post_attention_layernorm.weight",
                          q: p + "self_attn.q_proj.weight", k: p + "self_attn.k_proj.weight", v: p + "self_attn.v_proj.weight",
                          qBias: bias(c.qkvBias, "self_attn.q_proj"), kBias: bias(c.qkvBias, "self_attn.k_proj"),
                          vBias: bias(c.qkvBias, "self_attn.v_proj"),
                          o: p + "self_attn.o_proj.weight", oBias: bias(c.outputProjectionBias, "self_attn.o_proj"),
                          up: p + "mlp.up_proj.weight", upBias: bias(c.mlpBias, "mlp.up_proj"),
                          gate: p + "mlp.gate_proj.weight", gateBias: bias(c.mlpBias, "mlp.gate_proj"),
                          down: p + "mlp.down_proj.weight", downBias: bias(c.mlpBias, "mlp.down_proj"))
    }

    /// Builds the graph for `config`, finding the tensor-name prefix from `names` (the checkpoint's tensors;
    /// empty: the prefix `save_pretrained` writes for a causal LM).
    public init(config: TransformerConfig, names: [String] = []) {
        self.config = config
        let set = Set(names)
        switch config.family {
        case .gpt2: prefix = set.contains("wte.weight") && !set.contains("transformer.wte.weight") ? "" : "transformer."
        case .llama: prefix = set.contains("embed_tokens.weight") && !set.contains("model.embed_tokens.weight") ? "" : "model."
        }
        architecture = Architecture(nodes: [], inputShape: [nil])
        architecture = buildArchitecture()
    }

    /// Opens a Hugging Face model's architecture: config.json read, the graph built over its tensors' names.
    public init(model: HuggingFaceModel) throws {
        let config = try TransformerConfig(data: model.configData, file: model.configURL.path)
        self.init(config: config, names: model.names)
    }

    private func buildArchitecture() -> Architecture {
        let c = config
        var nodes: [Node] = []
        @discardableResult
        func add<O: Op>(_ name: String, _ op: O, _ inputs: [Int]) -> Int {
            nodes.append(Node(name: name, op: op, inputs: inputs))
            return nodes.count - 1
        }
        let gpt2 = c.family == .gpt2
        let modulePrefix = gpt2 ? "\(prefix)h." : "\(prefix)layers."
        var h = add(gpt2 ? prefix + "wte" : prefix + "embed_tokens",
                    Embedding(weight: embedding, vocabulary: c.vocabularySize, width: c.hiddenSize), [Architecture.inputIndex])
        if let wpe = positionEmbedding {
            h = add(prefix + "wpe", PositionEmbedding(weight: wpe, positions: c.maxPositions, width: c.hiddenSize), [h])
        }
        let activation: Activation = switch c.activation {
        case .geluNew: .geluNew
        case .gelu: .gelu
        case .relu: .relu
        case .silu: .silu
        }
        for i in 0..<c.layers {
            let n = layer(i)
            let m = "\(modulePrefix)\(i)."
            let scale = c.attentionScale(layer: i)
            let attentionOut: Int
            if gpt2 {
                let a = add(m + "ln_1", LayerNorm(weight: n.attentionNorm, bias: n.attentionNormBias, epsilon: c.normEpsilon), [h])
                let qkv = add(m + "attn.c_attn", HFConv1D(weight: n.qkv!, bias: n.qkvBias, outFeatures: 3 * c.hiddenSize), [a])
                let o = add(m + "attn", CausalAttention(heads: c.heads, headDim: c.headDim, scale: scale, packed: true), [qkv])
                attentionOut = add(m + "attn.c_proj", HFConv1D(weight: n.o, bias: n.oBias, outFeatures: c.hiddenSize), [o])
            } else {
                let a = add(m + "input_layernorm", RMSNorm(weight: n.attentionNorm, epsilon: c.normEpsilon), [h])
                var q = add(m + "self_attn.q_proj", Linear(weight: n.q!, bias: n.qBias, outFeatures: c.heads * c.headDim), [a])
                var k = add(m + "self_attn.k_proj", Linear(weight: n.k!, bias: n.kBias, outFeatures: c.keyValueHeads * c.headDim), [a])
                let v = add(m + "self_attn.v_proj", Linear(weight: n.v!, bias: n.vBias, outFeatures: c.keyValueHeads * c.headDim), [a])
                q = add(m + "self_attn.rope_q", RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta), [q])
                k = add(m + "self_attn.rope_k", RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta), [k])
                let o = add(m + "self_attn", CausalAttention(heads: c.heads, keyValueHeads: c.keyValueHeads, headDim: c.headDim,
                                                             scale: scale, window: c.slidingWindow, packed: false), [q, k, v])
                attentionOut = add(m + "self_attn.o_proj", Linear(weight: n.o, bias: n.oBias, outFeatures: c.hiddenSize), [o])
            }
            h = add(m + "attn_residual", Add(), [h, attentionOut])
            let mlpOut: Int
            if gpt2 {
                let x = add(m + "ln_2", LayerNorm(weight: n.mlpNorm, bias: n.mlpNormBias, epsilon: c.normEpsilon), [h])
                let f = add(m + "mlp.c_fc", HFConv1D(weight: n.up, bias: n.upBias, outFeatures: c.intermediateSize), [x])
                let act = add(m + "mlp.act", ActivationOp(activation), [f])
                mlpOut = add(m + "mlp.c_proj", HFConv1D(weight: n.down, bias: n.downBias, outFeatures: c.hiddenSize), [act])
            } else {
                let x = add(m + "post_attention_layernorm", RMSNorm(weight: n.mlpNorm, epsilon: c.normEpsilon), [h])
                let g = add(m + "mlp.gate_proj", Linear(weight: n.gate!, bias: n.gateBias, outFeatures: c.intermediateSize), [x])
                let act = add(m + "mlp.act", ActivationOp(activation), [g])
                let u = add(m + "mlp.up_proj", Linear(weight: n.up, bias: n.upBias, outFeatures: c.intermediateSize), [x])
                let prod = add(m + "mlp.gate_mul", Multiply(), [act, u])
                mlpOut = add(m + "mlp.down_proj", Linear(weight: n.down, bias: n.downBias, outFeatures: c.hiddenSize), [prod])
            }
            h = add(m + "mlp_residual", Add(), [h, mlpOut])
        }
        if gpt2 {
            h = add(prefix + "ln_f", LayerNorm(weight: finalNorm, bias: finalNormBias, epsilon: c.normEpsilon), [h])
        } else {
            h = add(prefix + "norm", RMSNorm(weight: finalNorm, epsilon: c.normEpsilon), [h])
        }
        add("lm_head", LMHead(weight: outputWeight), [h])
        return Architecture(nodes: nodes, inputShape: [nil])
    }

    /// Hugging Face's initialisation for a fresh model: every linear, Conv1D and embedding weight
    /// N(0, initializer_range), biases 0, norm weights 1 (biases 0); GPT-2 also scales the output
    /// projections (attn.c_proj, mlp.c_proj) by 1/sqrt(2 n_layer). Drawn tensor by tensor in graph order.
    public func initialParameters(seed: UInt64, std: Double = 0.02) -> ParameterSet {
        var g = SeededGenerator(seed: seed)
        var params = ParameterSet()
        let c = config
        func normal(_ name: String, _ shape: [Int], _ s: Double) {
            guard params[name] == nil else { return }
            params[name] = Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float(g.normal() * s) })
        }
        func constant(_ name: String?, _ shape: [Int], _ v: Float) {
            guard let name, params[name] == nil else { return }
            params[name] = Tensor(shape: shape, repeating: v)
        }
        let d = c.hiddenSize, qw = c.heads * c.headDim, kvw = c.keyValueHeads * c.headDim
        normal(embedding, [c.vocabularySize, d], std)
        if let wpe = positionEmbedding { normal(wpe, [c.maxPositions, d], std) }
        let projectionStd = c.family == .gpt2 ? std / Double(2 * c.layers).squareRoot() : std
        for i in 0..<c.layers {
            let n = layer(i)
            constant(n.attentionNorm, [d], 1)
            constant(n.attentionNormBias, [d], 0)
            if let qkv = n.qkv {
                normal(qkv, [d, 3 * d], std)
                constant(n.qkvBias, [3 * d], 0)
                normal(n.o, [d, d], projectionStd)
            } else {
                normal(n.q!, [qw, d], std)
                normal(n.k!, [kvw, d], std)
                normal(n.v!, [kvw, d], std)
                constant(n.qBias, [qw], 0)
                constant(n.kBias, [kvw], 0)
                constant(n.vBias, [kvw], 0)
                normal(n.o, [d, qw], std)
            }
            constant(n.oBias, [d], 0)
            constant(n.mlpNorm, [d], 1)
            constant(n.mlpNormBias, [d], 0)
            if c.family == .gpt2 {
                normal(n.up, [d, c.intermediateSize], std)
                constant(n.upBias, [c.intermediateSize], 0)
                normal(n.down, [c.intermediateSize, d], projectionStd)
            } else {
                normal(n.gate!, [c.intermediateSize, d], std)
                constant(n.gateBias, [c.intermediateSize], 0)
                normal(n.up, [c.intermediateSize, d], std)
                constant(n.upBias, [c.intermediateSize], 0)
                normal(n.down, [d, c.intermediateSize], std)
            }
            constant(n.downBias, [d], 0)
        }
        constant(finalNorm, [d], 1)
        constant(finalNormBias, [d], 0)
        if !c.tiedEmbeddings { normal("lm_head.weight", [c.vocabularySize, d], std) }
        return params
    }
}
