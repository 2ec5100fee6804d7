{{/* Chart name, overridable. */}}
{{- define "idsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-idsync" (or the release name when it already contains the chart name), overridable. */}}
{{- define "idsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "idsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "idsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: idsync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (operator or identity-service): pass (list $ "operator"). */}}
{{- define "idsync.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "idsync.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "idsync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "idsync.operator.fullname" -}}
{{ include "idsync.fullname" . }}-operator
{{- end }}

{{- define "idsync.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "idsync.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "idsync.service.fullname" -}}
{{ include "idsync.fullname" . }}-service
{{- end }}

{{- define "idsync.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "idsync.fullname" .)) .Values.identityService.adminToken.existingSecret }}
{{- end }}

{{/* Whether the monitoring.coreos.com/v1 objects are rendered. */}}
{{- define "idsync.monitoringApi" -}}
{{- if or .Values.monitoring.forceRender (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/* Prometheus selectors of the chart's scrape targets: the job is the Service name the ServiceMonitor scrapes. */}}
{{- define "idsync.operator.promSelector" -}}
job="{{ include "idsync.operator.fullname" . }}-metrics",namespace="{{ .Release.Namespace }}"
{{- end }}
{{- define "idsync.service.promSelector" -}}
job="{{ include "idsync.service.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end }}

{{/* The restricted Pod Security Standard, for the pod and its container. */}}
{{- define "idsync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "idsync.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
