// ESM entry: the same classes as the CommonJS one.
import zerowire from './index.js'

export const { Client, Server, curveKeypair } = zerowire
export default zerowire
