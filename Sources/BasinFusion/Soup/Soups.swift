import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Model soups and the output ensemble they are measured against.
public enum Soup {
    // MARK: Output ensemble

    /// Metrics of the output ensemble: the mean of the models' softmax probabilities. Loss is the mean
    /// negative log of the ensemble's probability of the label; accuracy is its argmax.
    public static func ensembleMetrics(network: Network, models: [ParameterSet], on data: Dataset, batchSize: Int = 1024) -> Metrics {
        ensembleMetrics(members: models.map { (network, $0) }, on: data, batchSize: batchSize)
    }

    /// Ensemble of models that may have different architectures.
    public static func ensembleMetrics(members: [(Network, ParameterSet)], on data: Dataset, batchSize: Int = 1024) -> Metrics {
        precondition(!members.isEmpty, "ensemble of no models")
        // Network.evaluate applies softmax cross-entropy to what we return; log(mean p) is a valid logit
        // vector whose softmax is mean p, so the loss and argmax are the ensemble's.
        return members[0].0.evaluate(on: data, batchSize: batchSize) { batch, _ in
            var meanProb: Tensor? = nil
            for (network, params) in members {
                var p = network.logits(batch, params)
                softmaxRows(&p)
                if meanProb == nil { meanProb = p } else { meanProb!.addScaled(p, 1) }
            }
            let inv = 1 / Float(members.count)
            return meanProb!.map { Foundation.log(Swift.max($0 * inv, Float.leastNormalMagnitude)) }
        }
    }

    /// Softmax over the last axis (classes or vocabulary), for logits [N, C] or [N, L, V].
    static func softmaxRows(_ z: inout Tensor) {
        let c = z.shape.last ?? 1
        let r = c == 0 ? 0 : z.count / c
        z.withUnsafeMutableBufferPointer { v in
            for i in 0..<r {
                let row = v.baseAddress! + i * c
                var m = -Float.infinity
                for j in 0..<c { m = Swift.max(m, row[j]) }
                var s: Float = 0
                for j in 0..<c {
                    row[j] = Foundation.exp(row[j] - m)
                    s += row[j]
                }
                for j in 0..<c { row[j] /= s }
            }
        }
    }

    // MARK: Greedy soup

    public struct GreedyResult: Sendable {
        /// Indices (into the ingredients) in the soup, in the order they were added.
        public var chosen: [Int]
        /// Every ingredient's held-out metrics.
        public var ingredientMetrics: [Metrics]
        /// Ingredient indices by decreasing held-out accuracy (the order tried).
        public var order: [Int]
        public var soup: ParameterSet
        public var metrics: Metrics
    }

    /// Greedy soup (Wortsman et al. 2022): sort by held-out accuracy, start from the best ingredient, add each
    /// next one if the uniform average with it does not lower held-out accuracy. Never below the best ingredient.
    /// With a `correction` (BatchNorm reset, REPAIR), every soup tried -- the one-ingredient start included -- is
    /// corrected before it is measured; the ingredients are ranked as they are. `soup` stays uncorrected.
    public static func greedy(network: Network, ingredients: [ParameterSet], heldOut: Dataset,
                              correction: CombinationCorrection? = nil) throws -> GreedyResult {
        guard !ingredients.isEmpty else { throw MergeError("greedy soup of no ingredients") }
        let metrics = ingredients.map { network.evaluate($0, on: heldOut) }
        func measure(_ soup: ParameterSet, _ members: [Int]) throws -> Metrics {
            guard let correction else { return network.evaluate(soup, on: heldOut) }
            var weights = [Double](repeating: 0, count: ingredients.count)
            for i in members { weights[i] = 1 / Double(members.count) }
            return try correction.evaluate(soup, weights: weights, network: network, on: [heldOut])[0]
        }
        // Stable: ties keep the given order; lower loss breaks accuracy ties.
        let order = ingredients.indices.sorted {
            (metrics[$0].accuracy, -metrics[$0].loss, -$0) > (metrics[$1].accuracy, -metrics[$1].loss, -$1)
        }
        var chosen = [order[0]]
        var sum = ingredients[order[0]]
        var soup = sum
        var best = correction == nil ? metrics[order[0]] : try measure(soup, chosen)
        for i in order.dropFirst() {
            let candidateSum = sum + ingredients[i]
            let candidate = candidateSum.mapTensors { _, t in t.scaled(by: 1 / Float(chosen.count + 1)) }
            let m = try measure(candidate, chosen + [i])
            if m.accuracy >= best.accuracy {
                chosen.append(i)
                sum = candidateSum
                soup = candidate
                best = m
            }
        }
        return GreedyResult(chosen: chosen, ingredientMetrics: metrics, order: order, soup: soup, metrics: best)
    }

    // MARK: Learned soup

    public struct LearnedResult: Sendable {
        /// Mixing coefficients: [group][model] (one group, or one per layer), each row summing to 1.
        public var coefficients: [[Float]]
        /// Group names (the layer prefix of the tensor names, or "all").
        public var groups: [String]
        public var soup: ParameterSet
        public var metrics: Metrics
    }

    /// The layer a tensor belongs to for per-layer coefficients: its name without the last component
    /// ("layers.0.weight" -> "layers.0").
    public static func layerGroup(_ name: String) -> String {
        guard let dot = name.lastIndex(of: ".") else { return name }
        return String(name[..<dot])
    }

    /// Learned soup: mixing coefficients softmax(alpha) (one set, or one per layer) optimised with Adam on the
    /// held-out cross-entropy. d loss / d lambda_i = sum over the group's tensors of <d loss / d theta, theta_i>.
    /// The loss over the coefficients is not convex, so it starts twice: from the uniform soup and from the
    /// best held-out ingredient (weight ~0.9), and keeps the run with the lower held-out loss.
    public static func learned(network: Network, ingredients: [ParameterSet], heldOut: Dataset, perLayer: Bool = false,
                               steps: Int = 100, learningRate: Float = 0.05, batchSize: Int = 512, seed: UInt64 = 0) throws -> LearnedResult {
        let uniform = try learned(network: network, ingredients: ingredients, heldOut: heldOut, perLayer: perLayer, steps: steps,
                                  learningRate: learningRate, batchSize: batchSize, seed: seed, initialLogits: nil)
        guard ingredients.count > 1 else { return uniform }
        let metrics = ingredients.map { network.evaluate($0, on: heldOut) }
        let best = metrics.indices.min { metrics[$0].loss < metrics[$1].loss }!
        var logits = [Float](repeating: 0, count: ingredients.count)
        logits[best] = Foundation.log(9 * Float(ingredients.count - 1))  // softmax weight 0.9 on the best
        let fromBest = try learned(network: network, ingredients: ingredients, heldOut: heldOut, perLayer: perLayer, steps: steps,
                                   learningRate: learningRate, batchSize: batchSize, seed: seed, initialLogits: logits)
        return fromBest.metrics.loss < uniform.metrics.loss ? fromBest : uniform
    }

    /// One learned-soup run from the given starting logits (nil: uniform).
    public static func learned(network: Network, ingredients: [ParameterSet], heldOut: Dataset, perLayer: Bool,
                               steps: Int, learningRate: Float, batchSize: Int, seed: UInt64, initialLogits: [Float]?) throws -> LearnedResult {
        guard let reference = ingredients.first else { throw MergeError("learned soup of no ingredients") }
        for m in ingredients { try reference.checkCompatible(with: m) }
        let groups = perLayer ? reference.names.map(layerGroup).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } } : ["all"]
        let groupOf = Dictionary(uniqueKeysWithValues: reference.names.map { ($0, perLayer ? groups.firstIndex(of: layerGroup($0))! : 0) })
        let k = ingredients.count
        var alphas = [Tensor](repeating: initialLogits.map { Tensor(shape: [k], storage: $0) } ?? Tensor.zeros([k]), count: groups.count)
        var optimizer = Adam(learningRate: learningRate)
        func lambdas(_ alphas: [Tensor]) -> [[Float]] {
            alphas.map { a in
                let m = a.storage.max() ?? 0
                let e = a.storage.map { Foundation.exp($0 - m) }
                let s = e.reduce(0, +)
                return e.map { $0 / s }
            }
        }
        func soup(_ lam: [[Float]]) -> ParameterSet {
            var out = ParameterSet()
            for name in reference.names {
                let g = groupOf[name]!
                out[name] = Tensor.combination(ingredients.indices.map { (ingredients[$0][name]!, lam[g][$0]) })
            }
            return out
        }
        var rng = SeededGenerator(seed: seed)
        let x = heldOut.x
        for _ in 0..<steps {
            let lam = lambdas(alphas)
            let theta = soup(lam)
            let batch: (Tensor, ArraySlice<Int32>)
            if heldOut.count <= batchSize {
                batch = (x, heldOut.y[...])
            } else {
                let idx = (0..<batchSize).map { _ in Int(rng.next() % UInt64(heldOut.count)) }
                batch = (x.gatherRows(idx), heldOut.labels(at: idx))
            }
            let (_, grads) = network.lossAndGradients(theta, x: batch.0, y: batch.1)
            // d loss / d lambda[g][i], then through the softmax to alpha.
            var dLambda = [[Double]](repeating: [Double](repeating: 0, count: k), count: groups.count)
            for name in reference.names {
                guard let g = grads[name] else { continue }
                for i in 0..<k { dLambda[groupOf[name]!][i] += g.dot(ingredients[i][name]!) }
            }
            var alphaGrads: [Tensor] = []
            for gi in groups.indices {
                let l = lam[gi]
                let inner = (0..<k).reduce(0.0) { $0 + Double(l[$1]) * dLambda[gi][$1] }
                alphaGrads.append(Tensor(shape: [k], storage: (0..<k).map { Float(Double(l[$0]) * (dLambda[gi][$0] - inner)) }))
            }
            optimizer.step(&alphas, gradients: alphaGrads)
        }
        let lam = lambdas(alphas)
        let final = soup(lam)
        return LearnedResult(coefficients: lam, groups: groups, soup: final, metrics: network.evaluate(final, on: heldOut))
    }
}
