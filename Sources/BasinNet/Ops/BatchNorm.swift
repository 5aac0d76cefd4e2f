import BasinTensor
import Foundation

/// Batch normalisation (PyTorch nn.BatchNorm1d / nn.BatchNorm2d) over the channel axis, the first axis of a
/// sample ([C], [C, L] or [C, H, W]).
///
/// Eval mode normalises with the running statistics. Train mode normalises with the batch's mean and biased
/// variance and updates the running statistics as PyTorch does: running = (1 - m) running + m batch, with the
/// unbiased variance, m = `momentum` (0.1), or m = 1 / num_batches_tracked when `momentum` is null (PyTorch's
/// None: the plain average over the batches seen), and num_batches_tracked + 1. A run with
/// `cumulativeStatistics` uses the plain average whatever the momentum (a BatchNorm reset).
///
/// Architecture file: `{"op": "batchnorm2d", "module": "features.1"}` binds `features.1.weight`, `.bias`,
/// `.running_mean`, `.running_var` and `.num_batches_tracked`; or name them one by one with "weight", "bias"
/// (both optional: affine=False), "running_mean", "running_var", "num_batches_tracked" (optional: absent in ONNX
/// graphs). Also "eps" (1e-5), "momentum" (0.1; null = cumulative), "num_features" (to initialise from scratch).
public struct BatchNorm: Op {
    public static let typeNames = ["batchnorm2d", "batchnorm1d", "batchnorm", "batch_norm"]

    public var weight: String?
    public var bias: String?
    public var runningMean: String
    public var runningVar: String
    public var numBatchesTracked: String?
    public var eps: Double
    /// nil: cumulative average (PyTorch momentum=None).
    public var momentum: Double?
    public var numFeatures: Int?
    /// The name this op is written with ("batchnorm2d" or "batchnorm1d").
    public var typeName: String

    public init(module: String, eps: Double = 1e-5, momentum: Double? = 0.1, numFeatures: Int? = nil, typeName: String = "batchnorm2d") {
        self.init(weight: module + ".weight", bias: module + ".bias", runningMean: module + ".running_mean",
                  runningVar: module + ".running_var", numBatchesTracked: module + ".num_batches_tracked",
                  eps: eps, momentum: momentum, numFeatures: numFeatures, typeName: typeName)
    }

    public init(weight: String?, bias: String?, runningMean: String, runningVar: String, numBatchesTracked: String?,
                eps: Double = 1e-5, momentum: Double? = 0.1, numFeatures: Int? = nil, typeName: String = "batchnorm2d") {
        self.weight = weight
        self.bias = bias
        self.runningMean = runningMean
        self.runningVar = runningVar
        self.numBatchesTracked = numBatchesTracked
        self.eps = eps
        self.momentum = momentum
        self.numFeatures = numFeatures
        self.typeName = typeName
    }

    public static func read(_ a: inout NodeAttributes, typeName: String) throws -> BatchNorm {
        let module = try a.optionalString("module")
        func name(_ key: String) throws -> String? {
            if let explicit = try a.optionalString(key) { return explicit }
            return module.map { $0 + "." + key }
        }
        let mean = try name("running_mean"), variance = try name("running_var")
        guard let mean, let variance else {
            throw a.error("running_mean", "a batchnorm node needs \"module\" or \"running_mean\" and \"running_var\"")
        }
        let eps = try a.double("eps", default: 1e-5)
        guard eps > 0 else { throw a.error("eps", "must be positive") }
        var momentum: Double? = 0.1
        if a.has("momentum") {
            momentum = try a.optionalDouble("momentum")
            if let m = momentum, !(m >= 0 && m <= 1) { throw a.error("momentum", "must be in [0, 1] or null") }
        }
        let written = typeName == "batchnorm1d" ? "batchnorm1d" : "batchnorm2d"
        return BatchNorm(weight: try name("weight"), bias: try name("bias"), runningMean: mean, runningVar: variance,
                         numBatchesTracked: try name("num_batches_tracked"), eps: eps, momentum: momentum,
                         numFeatures: try a.optionalInt("num_features", minimum: 1), typeName: written)
    }

    public func write(to a: inout [String: JSONValue]) {
        let module = runningMean.hasSuffix(".running_mean") ? String(runningMean.dropLast(".running_mean".count)) : nil
        if let module, weight == module + ".weight", bias == module + ".bias", runningVar == module + ".running_var",
           numBatchesTracked == module + ".num_batches_tracked" {
            a["module"] = .string(module)
        } else {
            if let weight { a["weight"] = .string(weight) }
            if let bias { a["bias"] = .string(bias) }
            a["running_mean"] = .string(runningMean)
            a["running_var"] = .string(runningVar)
            if let numBatchesTracked { a["num_batches_tracked"] = .string(numBatchesTracked) }
        }
        if eps != 1e-5 { a["eps"] = .number(eps) }
        if momentum != 0.1 { a["momentum"] = momentum.map { .number($0) } ?? .null }
        if let numFeatures { a["num_features"] = .int(numFeatures) }
    }

    public var parameters: [ParameterSlot] {
        var slots: [ParameterSlot] = []
        if let weight { slots.append(ParameterSlot("weight", weight, channels: [ChannelRef("c")])) }
        if let bias { slots.append(ParameterSlot("bias", bias, channels: [ChannelRef("c")])) }
        slots.append(ParameterSlot("running_mean", runningMean, kind: .buffer, channels: [ChannelRef("c")]))
        slots.append(ParameterSlot("running_var", runningVar, kind: .buffer, channels: [ChannelRef("c")]))
        if let numBatchesTracked { slots.append(ParameterSlot("num_batches_tracked", numBatchesTracked, kind: .buffer, integer: true, channels: [])) }
        return slots
    }

    public func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape? {
        var c: Int? = numFeatures
        for name in [weight, bias, runningMean, runningVar].compactMap({ $0 }) {
            guard let s = shapeOf(name) else { throw NetworkError(.missingTensor, tensor: name, "needed by a batchnorm node is missing") }
            guard s.count == 1, c == nil || s[0] == c else {
                throw NetworkError(.badShape, tensor: name, "has shape \(s); expected [\(c.map(String.init) ?? "C")] like the node's other per-channel tensors")
            }
            c = s[0]
        }
        if let n = numBatchesTracked, let s = shapeOf(n), s.reduce(1, *) != 1 {
            throw NetworkError(.badShape, tensor: n, "has shape \(s); expected a single count")
        }
        guard let x = inputs[0] else { return nil }
        guard (1...3).contains(x.count) else {
            throw NetworkError(.badShape, tensor: runningMean, "batchnorm takes [C], [C, L] or [C, H, W] per sample, got \(Shapes.describe(x))")
        }
        if let xc = x[0], let c, xc != c {
            throw NetworkError(.badShape, tensor: runningMean, "has \(c) channels but the node receives \(xc)")
        }
        return x
    }

    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow {
        .axes(inputs: [AxisChannel(axis: 0, ChannelRef("c"))], output: AxisChannel(axis: 0, ChannelRef("c")))
    }

    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] {
        guard let c = numFeatures ?? (inputs[0]?.first ?? nil) else {
            throw NetworkError(.badShape, tensor: runningMean, "cannot be initialised: the node's channels are unknown")
        }
        return [weight, bias, runningMean, runningVar].compactMap { $0.map { ($0, [c]) } } + (numBatchesTracked.map { [($0, [])] } ?? [])
    }

    /// PyTorch's default: weight 1, bias 0, running mean 0, running variance 1, no batches tracked.
    public func initialParameters(_ inputs: [SampleShape?], generator: inout SeededGenerator) throws -> [(String, Tensor)] {
        guard let c = numFeatures ?? (inputs[0]?.first ?? nil) else {
            throw NetworkError(.badShape, tensor: runningMean, "cannot be initialised: the node's channels are unknown")
        }
        var out: [(String, Tensor)] = []
        if let weight { out.append((weight, Tensor(shape: [c], repeating: 1))) }
        if let bias { out.append((bias, Tensor(shape: [c], repeating: 0))) }
        out.append((runningMean, Tensor(shape: [c], repeating: 0)))
        out.append((runningVar, Tensor(shape: [c], repeating: 1)))
        if let numBatchesTracked { out.append((numBatchesTracked, Tensor(shape: [], repeating: 0))) }
        return out
    }

    /// Per-channel mean and 1/sqrt(var + eps) used to normalise, and whether they were the batch's.
    struct Saved: Sendable {
        let mean: [Float]
        let invstd: [Float]
        let batchStatistics: Bool
    }

    /// Per-channel mean and sum of squared deviations from it of a [N, C, ...] tensor (or [N, C] / [N] with
    /// `channels`), accumulated in double precision in two passes; the count per channel is N times the inner
    /// size. The batch statistics of train mode, and what REPAIR measures at its sites.
    public static func channelMoments(_ y: Tensor, channels c: Int) -> (mean: [Double], squares: [Double]) {
        let n = y.shape[0]
        let inner = y.count / max(1, n * c)
        let count = n * inner
        var sum = [Double](repeating: 0, count: c), sq = [Double](repeating: 0, count: c)
        y.withUnsafeBufferPointer { xs in
            for i in 0..<n {
                for ch in 0..<c {
                    let p = xs.baseAddress! + (i * c + ch) * inner
                    var s = 0.0
                    for j in 0..<inner { s += Double(p[j]) }
                    sum[ch] += s
                }
            }
            for ch in 0..<c { sum[ch] /= Double(max(1, count)) }
            for i in 0..<n {
                for ch in 0..<c {
                    let p = xs.baseAddress! + (i * c + ch) * inner
                    let m = sum[ch]
                    var s = 0.0
                    for j in 0..<inner { let d = Double(p[j]) - m; s += d * d }
                    sq[ch] += s
                }
            }
        }
        return (sum, sq)
    }

    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        let n = y.shape[0], c = y.shape.count > 1 ? y.shape[1] : y.count / max(1, n)
        let inner = y.count / max(1, n * c)
        let count = n * inner
        let w = weight.map { context.parameter($0) }
        let b = bias.map { context.parameter($0) }
        let epsF = Float(eps)
        var mean = [Float](repeating: 0, count: c)
        var invstd = [Float](repeating: 0, count: c)
        let batchStatistics = context.mode == .train
        if batchStatistics {
            let (sum, sq) = BatchNorm.channelMoments(y, channels: c)
            var newMean = context.parameter(runningMean), newVar = context.parameter(runningVar)
            let tracked = numBatchesTracked.flatMap { context.params[$0] }
            let batches = (tracked.map { Double($0[0]) } ?? 0) + 1
            let factor = context.cumulativeStatistics || momentum == nil ? 1 / batches : momentum!
            newMean.withUnsafeMutableBufferPointer { rm in
                newVar.withUnsafeMutableBufferPointer { rv in
                    for ch in 0..<c {
                        let biased = sq[ch] / Double(max(1, count))
                        let unbiased = count > 1 ? sq[ch] / Double(count - 1) : biased
                        mean[ch] = Float(sum[ch])
                        invstd[ch] = 1 / (Float(biased) + epsF).squareRoot()
                        rm[ch] = Float((1 - factor) * Double(rm[ch]) + factor * sum[ch])
                        rv[ch] = Float((1 - factor) * Double(rv[ch]) + factor * unbiased)
                    }
                }
            }
            context.bufferUpdates.append((runningMean, newMean))
            context.bufferUpdates.append((runningVar, newVar))
            if let numBatchesTracked, let tracked {
                context.bufferUpdates.append((numBatchesTracked, Tensor(shape: tracked.shape, repeating: Float(batches))))
            }
        } else {
            let rm = context.parameter(runningMean), rv = context.parameter(runningVar)
            for ch in 0..<c {
                mean[ch] = rm[ch]
                invstd[ch] = 1 / (rv[ch] + epsF).squareRoot()
            }
        }
        // y = x * alpha + beta per channel, alpha = invstd * weight, beta = bias - mean * alpha (PyTorch's form).
        var alpha = [Float](repeating: 0, count: c), beta = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            alpha[ch] = invstd[ch] * (w?[ch] ?? 1)
            beta[ch] = (b?[ch] ?? 0) - mean[ch] * alpha[ch]
        }
        // A fused element-wise op after the norm (its ReLU) is applied to each slice while it is in cache.
        let epilogue = context.epilogue
        context.epilogue = nil
        y.withUnsafeMutableBufferPointer { v in
            for i in 0..<n {
                for ch in 0..<c {
                    let p = v.baseAddress! + (i * c + ch) * inner
                    let (a, bb) = (alpha[ch], beta[ch])
                    for j in 0..<inner { p[j] = p[j] * a + bb }
                    epilogue?.apply(UnsafeMutableBufferPointer(start: p, count: inner))
                }
            }
        }
        if context.recordForBackward { context.saved = Saved(mean: mean, invstd: invstd, batchStatistics: batchStatistics) }
        return y
    }

    public func backward(_ context: inout BackwardContext) {
        guard let saved = context.saved as? Saved else { return }
        let x = context.inputs[0]
        let dy = context.outputGradient
        let n = x.shape[0], c = x.shape.count > 1 ? x.shape[1] : x.count / max(1, n)
        let inner = x.count / max(1, n * c)
        let count = Double(n * inner)
        let w = weight.map { context.parameter($0) }
        // Per channel: sum dy and sum dy * xhat.
        var sumDy = [Double](repeating: 0, count: c), sumDyXhat = [Double](repeating: 0, count: c)
        x.withUnsafeBufferPointer { xs in
            dy.withUnsafeBufferPointer { gs in
                for i in 0..<n {
                    for ch in 0..<c {
                        let off = (i * c + ch) * inner
                        let (m, s) = (saved.mean[ch], saved.invstd[ch])
                        var a = 0.0, b = 0.0
                        for j in 0..<inner {
                            let g = Double(gs[off + j])
                            a += g
                            b += g * Double((xs[off + j] - m) * s)
                        }
                        sumDy[ch] += a
                        sumDyXhat[ch] += b
                    }
                }
            }
        }
        if let weight { context.parameterGradients.append((weight, Tensor(shape: [c], storage: sumDyXhat.map { Float($0) }))) }
        if let bias { context.parameterGradients.append((bias, Tensor(shape: [c], storage: sumDy.map { Float($0) }))) }
        guard context.wantsInputGradient[0] else { return }
        context.inputGradients[0] = Tensor(shape: x.shape) { out in
            x.withUnsafeBufferPointer { xs in
                dy.withUnsafeBufferPointer { gs in
                    for i in 0..<n {
                        for ch in 0..<c {
                            let off = (i * c + ch) * inner
                            let (m, s) = (saved.mean[ch], saved.invstd[ch])
                            let scale = s * (w?[ch] ?? 1)
                            if saved.batchStatistics {
                                // dx = w invstd (dy - mean(dy) - xhat mean(dy xhat)).
                                let mdy = Float(sumDy[ch] / count), mdx = Float(sumDyXhat[ch] / count)
                                for j in 0..<inner {
                                    let xhat = (xs[off + j] - m) * s
                                    out[off + j] = scale * (gs[off + j] - mdy - xhat * mdx)
                                }
                            } else {
                                for j in 0..<inner { out[off + j] = scale * gs[off + j] }
                            }
                        }
                    }
                }
            }
        }
    }
}
