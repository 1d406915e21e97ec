// ESM entry: the same classes as the CommonJS one.
import zerowire from './index.js'

export const { Client, Server } = zerowire
export default zerowire
