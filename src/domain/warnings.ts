/** A setting the model could not honour: reported back to the caller, never silently dropped. */
export interface Warning {
  type: 'unsupported' | 'other';
  /** The request field concerned, e.g. `quality`. */
  param?: string;
  message: string;
}
