import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

final class SoupTests: XCTestCase {
    func loadPair() throws -> (LoadedModel, LoadedModel, Dataset, Dataset) {
        (try LoadedModel(path: Fixtures.mlpSeed0.path), try LoadedModel(path: Fixtures.mlpSeed1.path),
         try Dataset(url: Fixtures.digitsTrain), try Dataset(url: Fixtures.digitsTest))
    }

    func testGreedySoupNeverBelowBestIngredient() throws {
        let (a, b, _, test) = try loadPair()
        // Include the midpoint (a bad ingredient) too.
        let mid = try ParameterMerge.uniformSoup([a.params, b.params])
        let r = try Soup.greedy(network: a.network, ingredients: [mid, b.params, a.params], heldOut: test)
        let best = r.ingredientMetrics.map(\.accuracy).max()!
        XCTAssertGreaterThanOrEqual(r.metrics.accuracy, best)
        XCTAssertEqual(r.order.first, 2, "seed0 is the most accurate on test")
        XCTAssertEqual(r.chosen.first, 2)
        XCTAssertEqual(r.metrics, a.network.evaluate(r.soup, on: test))
    }

    func testEnsembleOfOneIsTheModelAndPairBeatsMidpoint() throws {
        let (a, b, _, test) = try loadPair()
        let single = Soup.ensembleMetrics(network: a.network, models: [a.params], on: test)
        let direct = a.network.evaluate(a.params, on: test)
        XCTAssertEqual(single.accuracy, direct.accuracy, accuracy: 1e-9)
        XCTAssertEqual(single.loss, direct.loss, accuracy: 1e-4)
        let pair = Soup.ensembleMetrics(network: a.network, models: [a.params, b.params], on: test)
        let mid = a.network.evaluate(try ParameterMerge.uniformSoup([a.params, b.params]), on: test)
        XCTAssertGreaterThan(pair.accuracy, mid.accuracy)
        XCTAssertGreaterThan(pair.accuracy, 0.95)
    }

    func testLearnedSoupImprovesOnUniform() throws {
        let (a, b, train, test) = try loadPair()
        let heldOut = train.slice(0..<512)
        let uniform = a.network.evaluate(try ParameterMerge.uniformSoup([a.params, b.params]), on: heldOut)
        let r = try Soup.learned(network: a.network, ingredients: [a.params, b.params], heldOut: heldOut, steps: 40, learningRate: 0.1)
        XCTAssertLessThan(r.metrics.loss, uniform.loss)
        XCTAssertEqual(r.coefficients[0].reduce(0, +), 1, accuracy: 1e-5)
        let perLayer = try Soup.learned(network: a.network, ingredients: [a.params, b.params], heldOut: heldOut, perLayer: true, steps: 20, learningRate: 0.1)
        XCTAssertEqual(perLayer.groups, ["layers.0", "layers.1", "layers.2"])
        _ = test
    }

    func testFisherAndRegMean() throws {
        let (a, b, train, test) = try loadPair()
        let data = train.slice(0..<256)
        // Merging a model with itself gives it back.
        let selfFisher = try DataAwareMerge.fisherMerge(network: a.network, models: [a.params, a.params], data: data, samples: 32)
        for n in a.params.names { XCTAssertEqual(selfFisher[n]!.maxAbsDifference(a.params[n]!), 0, accuracy: 1e-5) }
        let selfReg = try DataAwareMerge.regMean(network: a.network, models: [a.params, a.params], data: data)
        for n in a.params.names { XCTAssertEqual(selfReg[n]!.maxAbsDifference(a.params[n]!), 0, accuracy: 2e-3, n) }
        // On the pair they run and give a working model.
        let fisher = try DataAwareMerge.fisherMerge(network: a.network, models: [a.params, b.params], data: data, samples: 64)
        let reg = try DataAwareMerge.regMean(network: a.network, models: [a.params, b.params], data: data)
        let fm = a.network.evaluate(fisher, on: test), rm = a.network.evaluate(reg, on: test)
        XCTAssertTrue(fm.loss.isFinite && rm.loss.isFinite)
        XCTAssertGreaterThan(fm.accuracy, 0.1)
        XCTAssertGreaterThan(rm.accuracy, 0.1)
    }
}
